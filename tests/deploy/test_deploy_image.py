"""The image reference a build run leaves: read from its artifact, checked against the registry."""

import io
import json
import zipfile

import pytest

from deploy.image import ImageError, parse_image

DIGEST = "sha256:" + "ab" * 32


def artifact(fields: object, name: str = "image.json") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, json.dumps(fields))
    return out.getvalue()


def test_the_image_is_deployed_by_digest_without_its_tag() -> None:
    data = artifact({"image": "registry.example.com:5000/octo/model:abc", "digest": DIGEST})
    assert (
        parse_image(data, "registry.example.com:5000/octo")
        == f"registry.example.com:5000/octo/model@{DIGEST}"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not a zip", "no readable image.json"),
        (
            artifact({"image": "r.example.com/o/m", "digest": DIGEST}, name="other.json"),
            "no readable image.json",
        ),
        (artifact({"image": "r.example.com/o/m", "digest": "latest"}), "no sha256 digest"),
        (artifact({"image": "r.example.com/o/m@sha256:x", "digest": DIGEST}), "names no image repository"),
        (artifact({"image": "evil.example.com/o/m", "digest": DIGEST}), "not in the configured registry"),
        (artifact({"image": "r.example.com/o-evil/m", "digest": DIGEST}), "not in the configured registry"),
    ],
)
def test_a_bad_image_reference_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        parse_image(data, "r.example.com/o")
