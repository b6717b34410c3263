"""The convolutional network that classifies celestial bodies."""

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """The sizes that define the network; stored with the weights."""

    in_channels: int
    conv_size: int
    dense_size: int
    output_classes: int

    def as_metadata(self) -> dict[str, Any]:
        """Return the sizes as plain values."""
        return asdict(self)


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class CelestialNet(nn.Module):
    """Three conv blocks, global pooling and a small dense head."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        wide = arch.conv_size * 2
        self.features = nn.Sequential(
            _block(arch.in_channels, arch.conv_size),
            _block(arch.conv_size, wide),
            _block(wide, wide),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(wide * 4, arch.dense_size),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(arch.dense_size, arch.output_classes),
        )

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the logits of a batch of images (n, c, h, w) in [0, 1]."""
        logits: torch.Tensor = self.head(self.features(batch))
        return logits
