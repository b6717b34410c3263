"""Surface textures of each celestial body, as functions of a point on the unit sphere.

Each painter takes the rotated unit vectors of the visible hemisphere (shape ``(n, 3)``)
and a random generator, and returns linear RGB in ``[0, 1]`` (shape ``(n, 3)``).
"""

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Points = NDArray[np.float64]
Colors = NDArray[np.float64]
Painter = Callable[[Points, np.random.Generator], Colors]


def _rgb(*values: float) -> Colors:
    return np.array(values, dtype=np.float64)


def noise(points: Points, rng: np.random.Generator, freq: float, terms: int = 10) -> Points:
    """Return smooth, seamless noise in about [-1, 1] from random 3-D sinusoids."""
    directions = rng.normal(size=(terms, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    scales = freq * rng.uniform(0.6, 1.6, size=terms)
    phases = rng.uniform(0, 2 * np.pi, size=terms)
    waves = np.sin(points @ (directions * scales[:, None]).T + phases)
    result: Points = waves.sum(axis=1) / np.sqrt(terms / 2)
    return result


def _mix(base: Colors, other: Colors, weight: Points) -> Colors:
    w = np.clip(weight, 0.0, 1.0)[:, None]
    mixed: Colors = base * (1 - w) + other * w
    return mixed


def _latitude(points: Points) -> Points:
    lat: Points = np.arcsin(np.clip(points[:, 1], -1.0, 1.0))
    return lat


def _spot(points: Points, center: Points, radius: float, stretch: float = 1.0) -> Points:
    """Return a soft mask of a round (or stretched along longitude) spot on the sphere."""
    delta = points - center
    delta[:, 0] /= stretch
    distance = np.linalg.norm(delta, axis=1)
    mask: Points = np.clip(1.0 - distance / radius, 0.0, 1.0) ** 0.7
    return mask


def _random_surface_point(rng: np.random.Generator, max_lat: float = 1.2) -> Points:
    lat = rng.uniform(-max_lat, max_lat)
    lon = rng.uniform(-np.pi / 2, np.pi / 2)
    return np.array([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)])


def _craters(colors: Colors, points: Points, rng: np.random.Generator, count: int, size: float) -> Colors:
    """Darken crater floors and brighten their rims."""
    for _ in range(count):
        center = _random_surface_point(rng, max_lat=1.5)
        radius = size * rng.uniform(0.3, 1.0)
        distance = np.linalg.norm(points - center, axis=1) / radius
        floor = distance < 0.8
        rim = (distance >= 0.8) & (distance < 1.1)
        colors[floor] *= rng.uniform(0.55, 0.8)
        colors[rim] = np.minimum(colors[rim] * 1.3, 1.0)
    return colors


def _bands(points: Points, rng: np.random.Generator, count: float, wobble: float) -> Points:
    lat = _latitude(points)
    turbulence = wobble * noise(points, rng, freq=6.0)
    bands: Points = np.sin(lat * count + turbulence + rng.uniform(0, np.pi))
    return bands


def earth(points: Points, rng: np.random.Generator) -> Colors:
    """Oceans, green and brown continents, white clouds and polar caps."""
    ocean = _rgb(0.05, 0.2, 0.55)
    land = _mix(
        np.tile(_rgb(0.15, 0.45, 0.15), (len(points), 1)),
        np.tile(_rgb(0.55, 0.45, 0.25), (len(points), 1)),
        0.5 + 0.5 * noise(points, rng, 5.0),
    )
    is_land = np.clip((noise(points, rng, 2.5) - 0.2) * 4, 0, 1)
    colors = _mix(np.tile(ocean, (len(points), 1)), land, is_land)
    clouds = np.clip((noise(points, rng, 4.0) - 0.3) * 1.5, 0, 0.9)
    colors = _mix(colors, np.tile(_rgb(0.95, 0.95, 0.97), (len(points), 1)), clouds)
    caps = np.clip((np.abs(_latitude(points)) - 1.15) * 6, 0, 1)
    return _mix(colors, np.tile(_rgb(0.95, 0.97, 1.0), (len(points), 1)), caps)


def jupiter(points: Points, rng: np.random.Generator) -> Colors:
    """Cream and brown bands with the Great Red Spot."""
    light, dark = _rgb(0.88, 0.8, 0.66), _rgb(0.66, 0.43, 0.28)
    bands = _bands(points, rng, count=rng.uniform(7, 10), wobble=0.5)
    colors = _mix(np.tile(light, (len(points), 1)), np.tile(dark, (len(points), 1)), 0.5 + 0.5 * bands)
    lon = rng.uniform(-0.8, 0.8)
    center = np.array([np.cos(-0.38) * np.sin(lon), np.sin(-0.38), np.cos(-0.38) * np.cos(lon)])
    red_spot = _spot(points, center, radius=0.22, stretch=1.6)
    return _mix(colors, np.tile(_rgb(0.78, 0.33, 0.22), (len(points), 1)), red_spot)


def mars(points: Points, rng: np.random.Generator) -> Colors:
    """Rust red with dark plains and one white polar cap."""
    rust, dark = _rgb(0.78, 0.36, 0.17), _rgb(0.42, 0.2, 0.11)
    patches = np.clip(noise(points, rng, 3.0) * 0.8, 0, 1)
    colors = _mix(np.tile(rust, (len(points), 1)), np.tile(dark, (len(points), 1)), patches)
    pole = 1.0 if rng.random() < 0.5 else -1.0
    cap = np.clip((pole * _latitude(points) - 1.2) * 6, 0, 1)
    return _mix(colors, np.tile(_rgb(0.96, 0.94, 0.92), (len(points), 1)), cap)


def mercury(points: Points, rng: np.random.Generator) -> Colors:
    """Grey-brown and densely cratered."""
    grey = _rgb(0.55, 0.52, 0.48) * rng.uniform(0.9, 1.1)
    colors = np.tile(grey, (len(points), 1)) * (1 + 0.12 * noise(points, rng, 8.0))[:, None]
    return _craters(colors, points, rng, count=45, size=0.22)


def moon(points: Points, rng: np.random.Generator) -> Colors:
    """Light grey highlands, dark maria and a few bright craters."""
    highland, mare = _rgb(0.76, 0.76, 0.74), _rgb(0.33, 0.33, 0.35)
    maria = np.clip((noise(points, rng, 2.2) - 0.1) * 2.5, 0, 1)
    colors = _mix(np.tile(highland, (len(points), 1)), np.tile(mare, (len(points), 1)), maria)
    return _craters(colors, points, rng, count=12, size=0.15)


def neptune(points: Points, rng: np.random.Generator) -> Colors:
    """Deep blue with faint bands, a dark spot and white streaks."""
    deep, pale = _rgb(0.12, 0.25, 0.8), _rgb(0.3, 0.45, 0.95)
    bands = _bands(points, rng, count=rng.uniform(3, 5), wobble=0.3)
    colors = _mix(np.tile(deep, (len(points), 1)), np.tile(pale, (len(points), 1)), 0.5 + 0.3 * bands)
    spot = _spot(points, _random_surface_point(rng, max_lat=0.6), radius=0.2, stretch=1.5)
    colors = _mix(colors, np.tile(_rgb(0.05, 0.1, 0.4), (len(points), 1)), spot)
    streaks = np.clip((_bands(points, rng, count=14, wobble=1.0) - 0.85) * 5, 0, 1)
    return _mix(colors, np.tile(_rgb(0.9, 0.92, 1.0), (len(points), 1)), streaks)


def pluto(points: Points, rng: np.random.Generator) -> Colors:
    """Tan and dark red-brown with a bright heart-shaped plain."""
    tan, dark = _rgb(0.72, 0.58, 0.45), _rgb(0.4, 0.24, 0.17)
    colors = _mix(
        np.tile(tan, (len(points), 1)),
        np.tile(dark, (len(points), 1)),
        np.clip(noise(points, rng, 3.0), 0, 1),
    )
    center = _random_surface_point(rng, max_lat=0.5)
    offset = np.array([0.18, 0.05, 0.0])
    heart = np.maximum(_spot(points, center - offset, 0.3), _spot(points, center + offset, 0.3))
    return _mix(colors, np.tile(_rgb(0.94, 0.9, 0.84), (len(points), 1)), heart * 1.4)


def saturn(points: Points, rng: np.random.Generator) -> Colors:
    """Pale gold, softly banded (the rings are drawn by the renderer)."""
    gold, tan = _rgb(0.92, 0.83, 0.58), _rgb(0.78, 0.66, 0.42)
    bands = _bands(points, rng, count=rng.uniform(5, 8), wobble=0.2)
    return _mix(np.tile(gold, (len(points), 1)), np.tile(tan, (len(points), 1)), 0.5 + 0.4 * bands)


def uranus(points: Points, rng: np.random.Generator) -> Colors:
    """Pale cyan and nearly featureless, brighter towards the pole."""
    cyan = _rgb(0.6, 0.86, 0.88) * rng.uniform(0.92, 1.05)
    haze = 1 + 0.04 * noise(points, rng, 2.0)
    colors = np.tile(cyan, (len(points), 1)) * haze[:, None]
    pole = np.clip((points[:, 2] - 0.6) * 1.5, 0, 0.35)
    return _mix(colors, np.tile(_rgb(0.8, 0.95, 0.95), (len(points), 1)), pole)


def venus(points: Points, rng: np.random.Generator) -> Colors:
    """Cream and ochre swirls of thick cloud."""
    cream, ochre = _rgb(0.93, 0.86, 0.66), _rgb(0.8, 0.66, 0.42)
    swirl = noise(points + 0.3 * noise(points, rng, 3.0)[:, None], rng, 5.0)
    chevron = np.sin(_latitude(points) * 3 + np.abs(points[:, 0]) * 4)
    weight = 0.5 + 0.25 * swirl + 0.15 * chevron
    return _mix(np.tile(cream, (len(points), 1)), np.tile(ochre, (len(points), 1)), weight)


PAINTERS: dict[str, Painter] = {
    "Earth": earth,
    "Jupiter": jupiter,
    "Mars": mars,
    "Mercury": mercury,
    "Moon": moon,
    "Neptune": neptune,
    "Pluto": pluto,
    "Saturn": saturn,
    "Uranus": uranus,
    "Venus": venus,
}
RINGED = {"Saturn": (1.25, 2.15, 0.9), "Uranus": (1.45, 1.6, 0.25)}
