"""The `generate` stage: render a synthetic, seeded data set of celestial bodies."""

import argparse
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model import CLASSES
from model.bodies import PAINTERS, RINGED, Colors
from model.params import load_params

Image3 = NDArray[np.float64]


@dataclass(frozen=True)
class Pose:
    """Where the body sits in the frame and how it is turned and lit."""

    center: tuple[float, float]
    radius: float
    rotation: NDArray[np.float64]
    light: NDArray[np.float64]


def _rotation(tilt: float, incline: float, spin: float) -> NDArray[np.float64]:
    cz, sz = np.cos(tilt), np.sin(tilt)
    cx, sx = np.cos(incline), np.sin(incline)
    cy, sy = np.cos(spin), np.sin(spin)
    around_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    around_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    around_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rotation: NDArray[np.float64] = around_z @ around_x @ around_y
    return rotation


def random_pose(body: str, size: int, rng: np.random.Generator) -> Pose:
    """Draw a random position, scale, orientation and light direction for one image."""
    ringed = body == "Saturn"
    radius = size * (rng.uniform(0.17, 0.24) if ringed else rng.uniform(0.22, 0.42))
    margin = size / 2 - radius * (1.2 if ringed else 1.0)
    shift = rng.uniform(-1, 1, size=2) * max(margin, 0) * 0.5
    incline = rng.choice([-1, 1]) * rng.uniform(0.15, 0.55) if ringed else rng.uniform(-0.6, 0.6)
    tilt = rng.uniform(-0.6, 0.6) if ringed else rng.uniform(-np.pi, np.pi)
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.25, 1.0)])
    return Pose(
        center=(size / 2 + shift[0], size / 2 + shift[1]),
        radius=radius,
        rotation=_rotation(tilt, incline, rng.uniform(0, 2 * np.pi)),
        light=light / np.linalg.norm(light),
    )


def _starfield(size: int, rng: np.random.Generator) -> Image3:
    sky = np.zeros((size, size, 3)) + rng.uniform(0.0, 0.04) * np.array([0.6, 0.7, 1.0])
    count = int(rng.integers(15, 90))
    ys, xs = rng.integers(0, size, count), rng.integers(0, size, count)
    sky[ys, xs] = rng.uniform(0.3, 1.0, size=(count, 1)) * rng.uniform(0.85, 1.0, size=(count, 3))
    return sky


def _view_grid(size: int, pose: Pose) -> tuple[Image3, Image3]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    x = (xs - pose.center[0]) / pose.radius
    y = (pose.center[1] - ys) / pose.radius
    return x, y


def _paint_disk(image: Image3, body: str, pose: Pose, rng: np.random.Generator) -> Image3:
    x, y = _view_grid(image.shape[0], pose)
    rho2 = x**2 + y**2
    inside = rho2 < 1.0
    normals = np.stack([x[inside], y[inside], np.sqrt(1.0 - rho2[inside])], axis=1)
    colors: Colors = PAINTERS[body](normals @ pose.rotation, rng)
    shade = 0.06 + 0.94 * np.clip(normals @ pose.light, 0, 1)
    limb = 0.7 + 0.3 * normals[:, 2]
    edge = np.clip((1.0 - np.sqrt(rho2[inside])) * pose.radius, 0, 1)[:, None]
    lit = colors * (shade * limb)[:, None]
    image[inside] = image[inside] * (1 - edge) + lit * edge
    return image


def _paint_rings(image: Image3, body: str, pose: Pose, front: bool) -> Image3:
    inner, outer, opacity = RINGED[body]
    normal = pose.rotation @ np.array([0.0, 1.0, 0.0])
    normal_z = normal[2] if abs(normal[2]) > 0.06 else np.copysign(0.06, normal[2])
    x, y = _view_grid(image.shape[0], pose)
    z = -(normal[0] * x + normal[1] * y) / normal_z
    distance = np.sqrt(x**2 + y**2 + z**2)
    surface_z = np.sqrt(np.clip(1.0 - x**2 - y**2, 0, None))
    on_disk = x**2 + y**2 < 1.0
    visible = ~on_disk | (z > surface_z) if front else ~on_disk
    ring = (distance > inner) & (distance < outer) & visible
    gap = np.abs(distance - (inner + 0.62 * (outer - inner))) < 0.05
    band = 0.8 + 0.2 * np.sin(distance[ring] * 25)
    tone = np.array([0.86, 0.78, 0.6]) if body == "Saturn" else np.array([0.7, 0.85, 0.9])
    alpha = (opacity * np.where(gap[ring], 0.15, 1.0))[:, None]
    image[ring] = image[ring] * (1 - alpha) + (tone * band[:, None]) * alpha
    return image


def render(body: str, size: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    """Render one image of `body`, `size`×`size` RGB, from the random generator."""
    pose = random_pose(body, size, rng)
    image = _starfield(size, rng)
    if body in RINGED and (body == "Saturn" or rng.random() < 0.4):
        image = _paint_disk(image, body, pose, rng)
        image = _paint_rings(image, body, pose, front=True)
    else:
        image = _paint_disk(image, body, pose, rng)
    image *= rng.uniform(0.75, 1.2) * rng.uniform(0.94, 1.06, size=3)
    image += rng.normal(0, rng.uniform(0.005, 0.04), size=image.shape)
    pixels: NDArray[np.uint8] = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return pixels


def image_rng(seed: int, class_index: int, image_index: int) -> np.random.Generator:
    """Return the generator of one image: independent of the others and of the order."""
    return np.random.default_rng([seed, class_index, image_index])


def _render_class(out: Path, seed: int, class_index: int, per_class: int, size: int) -> None:
    body = CLASSES[class_index]
    folder = out / body
    folder.mkdir(parents=True)
    for index in range(per_class):
        pixels = render(body, size, image_rng(seed, class_index, index))
        Image.fromarray(pixels).save(folder / f"{body.lower()}_{index:04d}.png", compress_level=1)


def generate(out: Path, seed: int, per_class: int, size: int) -> None:
    """Write `per_class` images of each class into `out/<class>/`, one process per core."""
    if out.exists():
        shutil.rmtree(out)
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        jobs = [pool.submit(_render_class, out, seed, i, per_class, size) for i in range(len(CLASSES))]
        for job in jobs:
            job.result()


def main() -> None:
    """Run the stage with `params.yaml`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    args = parser.parse_args()
    params = load_params("generate")
    generate(args.out, int(params["seed"]), int(params["images_per_class"]), int(params["image_size"]))


if __name__ == "__main__":
    main()
