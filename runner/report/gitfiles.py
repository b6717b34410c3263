"""Files of one commit, read through a single `git cat-file --batch` process, and the workspace's files."""

import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO

from runner.report.dvcformats import Unsupported

MAX_FILE_BYTES = 64 * 2**20  # a params, metrics or plot file the report reads


class CommitFiles:
    """Read files of `commit` by path; None where the commit has no such file."""

    def __init__(self, project: Path, commit: str) -> None:
        self._commit = commit
        self._process = subprocess.Popen(
            ["git", "cat-file", "--batch"],
            cwd=project,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def read(self, path: str) -> bytes | None:
        """Return the file's bytes; raise Unsupported where the path is a directory or too large."""
        if "\n" in path:
            raise Unsupported("a path with a line break")
        stdin, stdout = self._pipes()
        stdin.write(f"{self._commit}:{path}\n".encode())
        stdin.flush()
        line = stdout.readline().decode(errors="replace").rstrip("\n")
        if line.endswith(" missing"):
            return None
        header = line.split(" ")
        if len(header) != 3 or not header[2].isdigit():
            raise Unsupported(f"git cat-file answered {line!r} for {path}")
        _, kind, size = header
        content = stdout.read(int(size) + 1)[:-1]  # the content and a newline
        if kind != "blob":
            raise Unsupported(f"{path} is a {kind} in {self._commit}, not a file")
        if len(content) > MAX_FILE_BYTES:
            raise Unsupported(f"{path} is larger than {MAX_FILE_BYTES} bytes")
        return content

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None or self._process.poll() is not None:
            raise Unsupported("git cat-file is not running")
        return stdin, stdout

    def close(self) -> None:
        """End the git process."""
        if self._process.stdin:
            self._process.stdin.close()
        if self._process.stdout:
            self._process.stdout.close()
        self._process.wait()

    def __enter__(self) -> "CommitFiles":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def read_workspace(project: Path, path: str) -> bytes | None:
    """Return the workspace's file; None where there is none; Unsupported for a directory."""
    file = project / path
    if file.is_dir():
        raise Unsupported(f"{path} is a directory")
    if not file.is_file():
        return None
    if file.stat().st_size > MAX_FILE_BYTES:
        raise Unsupported(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return file.read_bytes()


def listed(project: Path, *args: str) -> list[str]:
    """Return the paths a `git ls-files`/`ls-tree` command lists (with -z)."""
    result = subprocess.run(["git", *args], cwd=project, capture_output=True, check=False)
    if result.returncode != 0:
        raise Unsupported(f"git {args[0]} failed")
    return [name for name in result.stdout.decode(errors="surrogateescape").split("\0") if name]
