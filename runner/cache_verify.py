"""What train.yml's pull job lets into the shared DVC cache: only objects named by the md5 of their bytes.

`dvc fetch` files each object under the hash the metadata claims and never checks the bytes it got. The
default branch's remote holds only what the push job hashed itself, but a DVC *import* (a `.dvc` file
whose dependency names another repository) is fetched from that repository's own remote, which a pull
request chooses. So the pull job refuses imports (`imports`), fetches into a cache of its own, and then
moves into the shared cache only the objects whose md5 is their name (`share`), never overwriting one
already there: the rule the push job follows.

    python -I -m runner.cache_verify imports PROJECT
    python -I -m runner.cache_verify share FETCHED SHARED
"""

import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Shared", "imports", "main", "share"]

OBJECTS = Path("files/md5")  # DVC 3's layout; a `.dir` object's md5 is that of its JSON listing too
CHUNK = 1 << 20


def _metadata_files(project: Path) -> Iterator[Path]:
    """Yield the project's `.dvc` files and dvc.lock files, wherever they are (not in .git or .dvc)."""
    for folder, subfolders, files in os.walk(project):
        subfolders[:] = sorted(s for s in subfolders if s not in (".git", ".dvc"))
        for name in sorted(files):
            if name.endswith(".dvc") or name == "dvc.lock":
                yield Path(folder) / name


def _deps(document: Any) -> Iterator[Any]:
    """Yield the dependencies of a `.dvc` file (top-level `deps`) or a dvc.lock (each stage's `deps`)."""
    if not isinstance(document, dict):
        return
    yield from document.get("deps") or []
    stages = document.get("stages")
    for stage in stages.values() if isinstance(stages, dict) else []:
        if isinstance(stage, dict):
            yield from stage.get("deps") or []


def imports(project: Path) -> list[str]:
    """Return one line for each dependency on another repository (`repo:`) in the project's DVC metadata.

    A file that is not YAML is named too: DVC would read it some other way than this check did.
    """
    found = []
    for path in _metadata_files(project):
        where = path.relative_to(project)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            found.append(f"{str(where)!r}: not YAML that this check can read ({type(error).__name__})")
            continue
        for dep in _deps(document):
            if isinstance(dep, dict) and "repo" in dep:
                found.append(f"{str(where)!r}: imports {dep.get('path')!r} from another repository")
    return found


@dataclass
class Shared:
    """What `share` did with each fetched object, by its name (`ab/cdef...`, with any `.dir`)."""

    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # not DVC 3's layout: this run's own, handed on
    refused: list[str] = field(default_factory=list)  # misnamed: an attack or a corrupt remote


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _named_by_content(path: Path) -> bool:
    claimed = path.parent.name + path.name.removesuffix(".dir")
    return len(path.parent.name) == 2 and _md5(path) == claimed


def _copy_in(source: Path, target: Path) -> None:
    """Copy an object into the shared cache whole or not at all: a rename, never an overwrite."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    with os.fdopen(handle, "wb") as out, source.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            out.write(chunk)
    os.chmod(temporary, 0o444)
    try:
        os.link(temporary, target)  # fails if another run got there first: theirs was checked too
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


def _prune(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def share(fetched: Path, shared: Path) -> Shared:
    """Move the fetched cache's objects into the shared cache, where their md5 is their name.

    An object the shared cache holds already is left as it is there (not hashed again, never
    overwritten) and dropped here. A misnamed one (or a symbolic link) stays here, named in
    `refused`. A file outside DVC 3's `files/md5` (DVC 2's md5 of text with its line ends changed,
    which this does not recompute) stays here too, named in `kept`: the run hands it on to its own
    train job only, as without a shared cache. So the fetched cache keeps only what was not shared.
    """
    result = Shared()
    for path in sorted(p for p in fetched.rglob("*") if p.is_symlink() or p.is_file()):
        name = str(path.relative_to(fetched))
        inside = path.relative_to(fetched / OBJECTS) if path.is_relative_to(fetched / OBJECTS) else None
        if path.is_symlink() or (inside is not None and len(inside.parts) != 2):
            result.refused.append(name)
            continue
        if inside is None:
            result.kept.append(name)
            continue
        target = shared / OBJECTS / inside
        if target.exists():
            result.present.append(str(inside))
        elif _named_by_content(path):
            _copy_in(path, target)
            result.added.append(str(inside))
        else:
            result.refused.append(name)
            continue
        path.unlink()
    _prune(fetched)
    return result


def main(argv: list[str]) -> int:
    """Run `imports PROJECT` or `share FETCHED SHARED`; exit 1, with a GitHub error line, on a refusal."""
    if len(argv) == 2 and argv[0] == "imports":
        found = imports(Path(argv[1]))
        for line in found:
            print(f"::error::{line}: the pull job fetches no DVC import (its bytes are never checked)")
        return 1 if found else 0
    if len(argv) == 3 and argv[0] == "share":
        result = share(Path(argv[1]), Path(argv[2]))
        print(f"shared cache: {len(result.added)} added, {len(result.present)} already there")
        if result.kept:
            print(f"::notice::{len(result.kept)} objects of DVC 2's layout: handed on to this run only")
        for name in result.refused:
            print(f"::error::{name!r} is not named by the md5 of its bytes: kept out of the shared cache")
        return 1 if result.refused else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
