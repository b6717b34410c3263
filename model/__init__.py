"""The reference model project: a classifier of celestial bodies."""

CLASSES: tuple[str, ...] = (
    "Earth",
    "Jupiter",
    "Mars",
    "Mercury",
    "Moon",
    "Neptune",
    "Pluto",
    "Saturn",
    "Uranus",
    "Venus",
)
MODEL_NAME = "celestial_bodies_classifier"
