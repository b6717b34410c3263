"""The image a deploy.yml run built: read from its `orbit-image` artifact and checked, never trusted."""

import io
import json
import re
import zipfile

from bot.events import Repo
from bot.github.actions import Artifacts, ArtifactTooLarge, named_artifact

ARTIFACT = "orbit-image"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9._:/-]*$")
MAX_BYTES = 64 * 1024
MAX_ARTIFACT_BYTES = 1024 * 1024  # a zip of one small image.json


class ImageError(ValueError):
    """The build run left no usable image reference; the message says why."""


def parse_image(data: bytes, registry: str) -> str:
    """Return `repository@digest` from the artifact's zip, checked against the configured registry."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("image.json")
            if info.file_size > MAX_BYTES:
                raise ImageError("image.json is too large")
            fields = json.loads(archive.read(info))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise ImageError(f"the {ARTIFACT} artifact has no readable image.json") from error
    repository, digest = fields.get("image"), fields.get("digest")
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise ImageError("image.json has no sha256 digest")
    if not isinstance(repository, str) or not REPOSITORY.match(repository) or "@" in repository:
        raise ImageError("image.json names no image repository")
    if not registry or not repository.startswith(registry.rstrip("/") + "/"):
        raise ImageError(f"the image {repository} is not in the configured registry")
    return f"{_without_tag(repository)}@{digest}"


def _without_tag(repository: str) -> str:
    """Drop a `:tag` from the last path part (a registry's `:port` stays): the digest pins the image."""
    head, _, last = repository.rpartition("/")
    return f"{head}/{last.split(':')[0]}"


async def read_image(github: Artifacts, repo: Repo, run_id: int, registry: str) -> str:
    """Download the run's image artifact and return the image reference to deploy, by digest."""
    try:
        data = await named_artifact(github, repo, run_id, ARTIFACT, max_bytes=MAX_ARTIFACT_BYTES)
    except ArtifactTooLarge as error:
        raise ImageError(str(error)) from error
    if data is None:
        raise ImageError(f"the build run left no {ARTIFACT} artifact")
    return parse_image(data, registry)
