"""Uploads: what decodes, and the clear rejection of everything else."""

import io
from http import HTTPStatus

import numpy as np
import pytest
from PIL import Image

from model.images import ImageRejected, decode
from model.preprocess import Preprocessing


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


CASES = [(fmt, mode) for fmt in ("PNG", "WEBP") for mode in ("RGB", "L", "RGBA", "P")]


@pytest.mark.parametrize(("fmt", "mode"), [*CASES, ("JPEG", "RGB"), ("JPEG", "L"), ("JPEG", "CMYK")])
def test_accepted_formats_and_modes_become_network_input(fmt: str, mode: str) -> None:
    image = Image.new("RGB", (300, 200), (200, 120, 40)).convert(mode)
    decoded = decode(encode(image, fmt))
    pixels = Preprocessing(32, 32, grayscale=False).to_pixels(decoded)
    assert pixels.shape == (32, 32, 3)
    assert pixels.dtype == np.uint8


def test_grayscale_preprocessing_has_one_channel() -> None:
    image = decode(encode(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG"))
    assert Preprocessing(16, 16, grayscale=True).to_pixels(image).shape == (16, 16, 1)


def test_empty_upload_is_rejected() -> None:
    with pytest.raises(ImageRejected, match="empty") as caught:
        decode(b"")
    assert caught.value.status == HTTPStatus.BAD_REQUEST


def test_text_is_not_an_image() -> None:
    with pytest.raises(ImageRejected, match="not an image"):
        decode(b"name: not an image\n" * 20)


def test_truncated_image_is_rejected() -> None:
    data = encode(Image.effect_noise((256, 256), 50).convert("RGB"), "PNG")
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        decode(data[: len(data) // 2])


def test_unsupported_format_is_rejected() -> None:
    with pytest.raises(ImageRejected, match="GIF images are not accepted"):
        decode(encode(Image.new("RGB", (8, 8)), "GIF"))


def test_decompression_bomb_is_rejected_before_decoding() -> None:
    bomb = encode(Image.new("1", (30_000, 30_000)), "PNG")
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageRejected) as caught:
        decode(bomb)
    assert caught.value.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_too_wide_image_is_rejected() -> None:
    with pytest.raises(ImageRejected, match="a side") as caught:
        decode(encode(Image.new("L", (9000, 2)), "PNG"))
    assert caught.value.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
