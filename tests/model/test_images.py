"""Uploads: what decodes, and the clear rejection of everything else."""

import io
import struct
import zlib
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
    bomb = solid_png(30_000, 30_000)
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageRejected) as caught:
        decode(bomb)
    assert caught.value.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_too_wide_image_is_rejected() -> None:
    with pytest.raises(ImageRejected, match="a side") as caught:
        decode(encode(Image.new("L", (9000, 2)), "PNG"))
    assert caught.value.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def solid_png(width: int, height: int) -> bytes:
    """A black 1-bit PNG of any size, written by hand in a few KB: no image of that size is built."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then the row's bits
    packer = zlib.compressobj(9)
    compressed = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(8000, 8000), (8000, 5001), (5001, 8000)])
def test_an_image_within_the_side_limit_but_over_the_pixel_cap_is_refused(width: int, height: int) -> None:
    """8000x8000 is 64 million pixels: under 8192 a side and under Pillow's own bomb limit (89
    million), so only orbit's cap of 40 million stops it before it decodes into memory."""
    data = solid_png(width, height)
    assert len(data) < 200_000
    with pytest.raises(ImageRejected) as caught:
        decode(data)
    assert str(caught.value) == (
        f"the image is {width}x{height}, {width * height:,} pixels; the limit is 40,000,000 in all"
    )
    assert caught.value.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_an_image_at_the_pixel_cap_is_accepted() -> None:
    image = decode(solid_png(8000, 5000))  # 40,000,000 pixels exactly
    assert image.size == (8000, 5000)
