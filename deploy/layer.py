"""The one image layer a deploy appends to the serving base: the exported Bento's files, as a tar.

The Bento (its code, its model, its bento.yaml) is read from the file `bentoml export` wrote, as data:
nothing of it is extracted to disk or run. The layer is reproducible: entries sorted, fixed times,
modes and owner (BentoML's user), gzip without a name or time, so the same Bento gives the same digest
and a second push finds every blob in the registry.
"""

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

BENTO_PATH = PurePosixPath("/home/bentoml/bento")  # where `bentoml containerize` puts it too
BENTOML_UID = 1034  # BentoML's images run as this user; deploy/manifests.py runs the pod as it
REQUIREMENTS = "env/python/requirements.txt"
LAYER_FILE = "layer.tar.gz"
MTIME = 0
MAX_MEMBERS = 100_000
MAX_FILE_BYTES = 4 * 1024**3  # one file of the Bento (the model's weights are the largest)
MAX_TOTAL_BYTES = 4 * 1024**3  # all of its files together: what the layer holds, unpacked
MAX_TEXT_BYTES = 1024 * 1024  # a file read into memory: the requirements, bento.yaml


class BentoError(ValueError):
    """The exported Bento cannot become a layer; the message says why."""


@dataclass(frozen=True)
class Layer:
    """A gzipped layer on disk: its digest (of the gzip) and diff id (of the tar), and its size."""

    path: Path
    digest: str
    diff_id: str
    size: int


class _Hashing(io.RawIOBase):
    """A writable stream that hashes and counts what goes through it to another stream."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.hash.update(data)
        self.size += len(data)
        return self.target.write(data)


def _members(
    bento: tarfile.TarFile, max_file: int | None = None, max_total: int | None = None
) -> Iterator[tuple[PurePosixPath, tarfile.TarInfo]]:
    """Yield the Bento's files and folders with their paths in it, refusing anything else.

    A sparse file is refused (a few bytes of header that unpack to any size of zeros), and so is a
    file over `max_file` bytes or files over `max_total` together (MAX_FILE_BYTES, MAX_TOTAL_BYTES).
    """
    max_file = MAX_FILE_BYTES if max_file is None else max_file
    max_total = MAX_TOTAL_BYTES if max_total is None else max_total
    total = 0
    for count, member in enumerate(bento, start=1):
        if count > MAX_MEMBERS:
            raise BentoError(f"the Bento holds more than {MAX_MEMBERS} entries")
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise BentoError(f"the Bento's entry {member.name!r} reaches outside it")
        if not (member.isfile() or member.isdir()):
            raise BentoError(f"the Bento's entry {member.name!r} is neither a file nor a folder")
        if member.issparse():
            raise BentoError(f"the Bento's entry {member.name!r} is a sparse file: refused")
        if member.size > max_file:
            raise BentoError(f"the Bento's file {member.name!r} is over {max_file} bytes")
        total += member.size
        if total > max_total:
            raise BentoError(f"the Bento's files are over {max_total} bytes in all")
        relative = PurePosixPath(*[part for part in path.parts if part != "."])
        if relative.parts:
            yield relative, member


def read_member(bento: Path, name: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Return one text file of the exported Bento, e.g. its requirements, refused over `max_bytes`."""
    with tarfile.open(bento, "r:*") as archive:
        for relative, member in _members(archive):
            if str(relative) == name and member.isfile():
                if member.size > max_bytes:
                    raise BentoError(f"the Bento's {name} is over {max_bytes} bytes: not read")
                extracted = archive.extractfile(member)
                if extracted is not None:
                    data = extracted.read(max_bytes + 1)
                    if len(data) > max_bytes:
                        raise BentoError(f"the Bento's {name} is over {max_bytes} bytes: not read")
                    return data.decode()
    raise BentoError(f"the Bento has no {name}")


def _entry(relative: PurePosixPath | None, member: tarfile.TarInfo | None) -> tarfile.TarInfo:
    """Return the layer's header for one of the Bento's entries (None: the Bento's own folder)."""
    path = BENTO_PATH if relative is None else BENTO_PATH / relative
    info = tarfile.TarInfo(str(path.relative_to("/")))
    info.uid = info.gid = BENTOML_UID
    info.uname = info.gname = "bentoml"
    info.mtime = MTIME
    if member is None or member.isdir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.type, info.size = tarfile.REGTYPE, member.size
        info.mode = 0o755 if member.mode & 0o111 else 0o644
    return info


def build_layer(bento: Path, out: Path) -> Layer:
    """Write the Bento's files under BENTO_PATH as a reproducible gzipped layer into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LAYER_FILE
    with tarfile.open(bento, "r:*") as source:
        members = sorted(_members(source), key=lambda item: str(item[0]))
        names = [str(relative) for relative, _ in members]
        if len(set(names)) != len(names):
            raise BentoError("the Bento names one entry twice")
        with path.open("wb") as file:
            compressed = _Hashing(file)
            with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=MTIME) as zipped:
                plain = _Hashing(zipped)  # type: ignore[arg-type]
                with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as layer:
                    layer.addfile(_entry(None, None))
                    for relative, member in members:
                        content = source.extractfile(member) if member.isfile() else None
                        layer.addfile(_entry(relative, member), content)
    return Layer(
        path, f"sha256:{compressed.hash.hexdigest()}", f"sha256:{plain.hash.hexdigest()}", compressed.size
    )
