"""Image limits at their boundaries, and what each refusal says: an upload of exactly the byte limit is
read and one byte more is a 413; a side of exactly 8192 pixels decodes and 8193 does not; one pixel
wide or tall is an image; Pillow's own decompression-bomb warning refuses the upload.

Written to kill the mutants scripts/mutation found alive.
"""

from http import HTTPStatus

import pytest
from PIL import Image

from model.images import MAX_SIDE, MAX_UPLOAD_BYTES, ImageRejected, _check_size, decode
from tests.model.test_images import solid_png

NOT_AN_IMAGE = "the upload is not an image: send a PNG, JPEG or WebP image"


def rejection(data: bytes) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        decode(data)
    return caught.value


def test_an_upload_of_exactly_the_byte_limit_is_read_and_one_byte_more_is_a_413() -> None:
    at_limit = rejection(b"x" * MAX_UPLOAD_BYTES)
    assert (str(at_limit), at_limit.status) == (NOT_AN_IMAGE, HTTPStatus.BAD_REQUEST)
    over = rejection(b"x" * (MAX_UPLOAD_BYTES + 1))
    assert (str(over), over.status) == (
        f"the upload is over {MAX_UPLOAD_BYTES} bytes",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )


def test_an_empty_upload_says_what_to_send() -> None:
    empty = rejection(b"")
    assert (str(empty), empty.status) == (
        "the upload is empty: send a PNG, JPEG or WebP image",
        HTTPStatus.BAD_REQUEST,
    )


@pytest.mark.parametrize(("width", "height"), [(1, 1), (1, 9), (9, 1), (MAX_SIDE, 1), (1, MAX_SIDE)])
def test_images_one_pixel_thin_and_exactly_the_side_limit_long_decode(width: int, height: int) -> None:
    assert decode(solid_png(width, height)).size == (width, height)


@pytest.mark.parametrize(("width", "height"), [(MAX_SIDE + 1, 1), (1, MAX_SIDE + 1)])
def test_one_pixel_over_the_side_limit_is_a_413(width: int, height: int) -> None:
    refused = rejection(solid_png(width, height))
    assert (str(refused), refused.status) == (
        f"the image is {width}x{height}; the limit is {MAX_SIDE} pixels a side",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )


def test_pillows_decompression_bomb_warning_refuses_the_upload() -> None:
    """100 million pixels: over Pillow's warning threshold (89 million), under its error (179 million)."""
    refused = rejection(solid_png(10_000, 10_000))
    assert (str(refused), refused.status) == (
        "the image decompresses to too many pixels",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )


def test_text_is_not_an_image_and_says_what_to_send() -> None:
    refused = rejection(b"name: not an image\n" * 20)
    assert (str(refused), refused.status) == (NOT_AN_IMAGE, HTTPStatus.BAD_REQUEST)


@pytest.mark.parametrize("size", [(0, 5), (5, 0), (0, 0)])
def test_a_header_with_no_pixels_is_refused(size: tuple[int, int]) -> None:
    """Pillow refuses such files itself today; the size check holds should a decoder ever pass one."""
    with pytest.raises(ImageRejected) as caught:
        _check_size(Image.new("L", size))
    assert (str(caught.value), caught.value.status) == ("the image has no pixels", HTTPStatus.BAD_REQUEST)
