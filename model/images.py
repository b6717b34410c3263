"""Decode uploaded images safely: every bad upload becomes a clear `ImageRejected`."""

import io
import warnings
from http import HTTPStatus

from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000


class ImageRejected(ValueError):
    """An upload that cannot be classified, with the HTTP status that says why."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def _check_size(image: Image.Image) -> None:
    """Refuse, from the header alone (before decoding), an image too wide, too tall or too large."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("the image has no pixels")
    if max(width, height) > MAX_SIDE:
        raise ImageRejected(
            f"the image is {width}x{height}; the limit is {MAX_SIDE} pixels a side",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )
    if width * height > MAX_PIXELS:
        raise ImageRejected(
            f"the image is {width}x{height}, {width * height:,} pixels; the limit is {MAX_PIXELS:,} in all",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )


def decode(data: bytes) -> Image.Image:
    """Return the fully decoded image, or raise `ImageRejected` with a reason a person can act on."""
    if not data:
        raise ImageRejected("the upload is empty: send a PNG, JPEG or WebP image")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageRejected(
            f"the upload is over {MAX_UPLOAD_BYTES} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ImageRejected(f"{image.format} images are not accepted: send a PNG, JPEG or WebP image")
            _check_size(image)
            image.load()
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as error:
            raise _explain(error) from error
        except (OSError, SyntaxError, ValueError) as error:
            if isinstance(error, ImageRejected):
                raise
            raise ImageRejected(f"the image is truncated or corrupt ({error})") from error
    return image


def _explain(error: Exception) -> ImageRejected:
    if isinstance(error, UnidentifiedImageError):
        return ImageRejected("the upload is not an image: send a PNG, JPEG or WebP image")
    return ImageRejected("the image decompresses to too many pixels", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
