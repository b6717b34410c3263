"""Files of the base commit as git holds them: its predictions and the images its pipeline drew."""

import subprocess
from pathlib import Path

MAX_FILE_BYTES = 64 * 2**20  # a predictions file or a PNG the report reads of either side


def read_at(project: Path, commit: str, path: str) -> bytes | None:
    """Return the file at `path` (relative to `project`) in `commit`, or None where git has none.

    Outputs with `cache: false` are committed, so the base's copy is in git as its metrics.json is.
    """
    result = subprocess.run(
        ["git", "show", f"{commit}:./{path}"], cwd=project, capture_output=True, check=False
    )
    if result.returncode != 0 or len(result.stdout) > MAX_FILE_BYTES:
        return None
    return result.stdout


def read_head(project: Path, path: str) -> bytes | None:
    """Return the workspace's file at `path`, or None where there is none (or it is too large)."""
    file = project / path
    if not file.is_file() or file.stat().st_size > MAX_FILE_BYTES:
        return None
    return file.read_bytes()
