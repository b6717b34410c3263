"""Whether an image the pipeline drew changed visibly since the base: a perceptual, not a byte, comparison.

Both images are made grayscale and shrunk to a grid of cells, each the mean of about `CELL` × `CELL`
pixels (at most `SIDE` cells a side). The image changed when one cell
moved by more than `CELL_THRESHOLD` of full brightness (a region changed: a different word in a
title, a moved curve) or all of them by more than `MEAN_THRESHOLD` on average. A few pixels,
anti-aliasing or a re-encoding move no cell that much: 3 pixels in one 8 × 8 cell are under 5 %.
"""

import io

from PIL import Image, ImageChops, ImageStat, UnidentifiedImageError

SIDE = 512
CELL = 8
CELL_THRESHOLD = 0.075  # 3 black pixels on white in one cell: 3 / 64 = 0.047; a changed word: 0.1 and up
MEAN_THRESHOLD = 0.005
MAX_PIXELS = 50_000_000  # a PNG bomb is not decoded


def difference(head: bytes, base: bytes) -> tuple[float, float]:
    """Return the largest and the mean absolute difference (0 … 1) of the cells of the two images."""
    with _opened(head) as first, _opened(base) as second:
        grid = (
            max(1, min(SIDE, first.width // CELL, second.width // CELL)),
            max(1, min(SIDE, first.height // CELL, second.height // CELL)),
        )
        cells = ImageChops.difference(_cells(first, grid), _cells(second, grid))
    largest = cells.getextrema()[1]
    assert isinstance(largest, int | float)
    return float(largest) / 255, float(ImageStat.Stat(cells).mean[0]) / 255


def visibly_changed(head: bytes, base: bytes | None) -> bool | None:
    """Return whether head differs visibly from base; None when there is no readable base to compare."""
    if base is None:
        return None
    try:
        largest, mean = difference(head, base)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return None
    return largest > CELL_THRESHOLD or mean > MEAN_THRESHOLD


def _opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise ValueError("the image is too large to compare")
    return image


def _cells(image: Image.Image, grid: tuple[int, int]) -> Image.Image:
    return image.convert("L").resize(grid, Image.Resampling.BOX)
