"""Open a report bundle artifact: it comes from a job that ran a pull request's code, so trust nothing.

The zip is read in memory with limits on entries and sizes; report.json must validate; only the
images the report names are kept, only if their names are plain file names (`[A-Za-z0-9._-]`, no
`..`, no leading dot: they go into links) and their bytes are PNG, JPEG or GIF. An error's message
goes into the PR comment, so a name from the bundle is written into it inert.
"""

import io
import zipfile
from dataclasses import dataclass

from pydantic import ValidationError

from bot.errors import PermanentError
from runner.report.bundle import Report
from runner.report.inert import safe_name, text

MAX_ENTRIES = 64
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_TOTAL_BYTES = 32 * 1024 * 1024
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


class BundleError(PermanentError):
    """The artifact is not a usable report bundle; the message says why."""


@dataclass(frozen=True)
class Bundle:
    """A validated report and the bytes of the images it shows."""

    report: Report
    images: dict[str, bytes]


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_FILE_BYTES:
        raise BundleError(f"{text(info.filename)} is larger than {MAX_FILE_BYTES // 2**20} MiB")
    with archive.open(info) as handle:
        data = handle.read(MAX_FILE_BYTES + 1)  # the header's size may lie; the read does not
    if len(data) > MAX_FILE_BYTES:
        raise BundleError(f"{text(info.filename)} is larger than {MAX_FILE_BYTES // 2**20} MiB")
    return data


def _entries(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = [info for info in archive.infolist() if not info.is_dir()]
    if len(infos) > MAX_ENTRIES:
        raise BundleError(f"the bundle has {len(infos)} files; at most {MAX_ENTRIES} are read")
    if sum(info.file_size for info in infos) > MAX_TOTAL_BYTES:
        raise BundleError(f"the bundle unpacks to more than {MAX_TOTAL_BYTES // 2**20} MiB")
    return {info.filename: info for info in infos}


def read_bundle(data: bytes) -> Bundle:
    """Return the bundle's report and images, or raise BundleError saying what is wrong."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise BundleError("the artifact is not a zip archive") from error
    with archive:
        entries = _entries(archive)
        if "report.json" not in entries:
            raise BundleError("the bundle has no report.json")
        try:
            report = Report.model_validate_json(_read(archive, entries["report.json"]))
        except ValidationError as error:
            raise BundleError(f"report.json is not a valid report: {error.error_count()} errors") from error
        images = {}
        for name in report.image_names():
            if safe_name(name) is None:
                raise BundleError(f"the report shows {text(repr(name))}, which is not a plain file name")
            if name not in entries:
                raise BundleError(f"the report shows {text(repr(name))}, which is not a file of the bundle")
            content = _read(archive, entries[name])
            if not content.startswith(IMAGE_MAGIC):
                raise BundleError(f"{text(name)} is not a PNG, JPEG or GIF image")
            images[name] = content
    return Bundle(report, images)
