"""Turn any image into the network's input, the same way in training, evaluation and serving."""

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image


@dataclass(frozen=True)
class Preprocessing:
    """How images are resized and coloured before they reach the network."""

    width: int
    height: int
    grayscale: bool

    @property
    def channels(self) -> int:
        """Return the number of input channels of the network."""
        return 1 if self.grayscale else 3

    def to_pixels(self, image: Image.Image) -> NDArray[np.uint8]:
        """Return the resized image as uint8, shape (height, width, channels)."""
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGBA").convert("RGB") if "A" in image.mode else image.convert("RGB")
        image = image.convert("L" if self.grayscale else "RGB")
        resized = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        pixels: NDArray[np.uint8] = np.asarray(resized, dtype=np.uint8)
        return pixels.reshape(self.height, self.width, self.channels)

    def as_metadata(self) -> dict[str, Any]:
        """Return the settings as plain values, for the model's metadata."""
        return {"width": self.width, "height": self.height, "grayscale": self.grayscale}

    @classmethod
    def from_metadata(cls, values: dict[str, Any]) -> "Preprocessing":
        """Rebuild the settings from the model's metadata."""
        return cls(int(values["width"]), int(values["height"]), bool(values["grayscale"]))


def to_tensor_batch(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Convert uint8 images (n, h, w, c) to float32 (n, c, h, w) in [0, 1]."""
    batch: NDArray[np.float32] = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)
    batch /= 255.0
    return batch
