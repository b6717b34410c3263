"""Read params, metrics and plot rows of the workspace and the base without DVC's API.

The base commit's files come from git (`git cat-file --batch`), or, for an output DVC caches, from
the DVC cache by the md5 the base's dvc.lock records; the workspace's from disk. What this reader
does not mirror raises `Unsupported` and the caller reads the project through DVC's API instead:
a pipeline beyond one templating-free dvc.yaml at the root, a .dvcignore with patterns, a declared
directory, a file that does not parse, a cached output that is not in the cache.
"""

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.report.collected import Collected, Revision, flat_files, named_plots, row_files
from runner.report.dvcconfig import cache_dir, read_config
from runner.report.dvcformats import (
    IMAGE_EXTENSIONS,
    ROW_EXTENSIONS,
    Unsupported,
    check_context,
    load_rows,
    load_values,
    parse_yaml,
    read_metric,
    select_params,
)
from runner.report.facts import remote_of
from runner.report.gitfiles import CommitFiles, listed, read_workspace
from runner.report.pipeline import DEFAULT_PARAMS, Pipeline, locked_outputs, parse_pipeline

__all__ = ["Unsupported", "collect_from_git"]

Reader = Callable[[str], bytes | None]
MD5 = re.compile(r"[0-9a-f]{32}")  # nothing else names a file of the cache (no path, no `..`)
DVC_FILE_MARKERS = (b"metric", b"plot", b"cmd", b"params")  # what would put a .dvc file in the report


class Side:
    """One revision's files as DVC would see them: the workspace, or a commit with the DVC cache."""

    def __init__(self, raw: Reader, cached_from: Callable[[str, "Side"], bytes | None] | None = None):
        self._raw = raw
        self._cached_from = cached_from
        self.pipeline = Pipeline()

    def load_pipeline(self) -> Pipeline:
        """Parse this revision's dvc.yaml; refuse a missing one or a params.yaml DVC cannot load."""
        dvc_yaml = self._raw("dvc.yaml")
        if dvc_yaml is None:
            raise Unsupported("no dvc.yaml")
        params = self._raw(DEFAULT_PARAMS)
        if params is not None:
            check_context(load_values(DEFAULT_PARAMS, params))
        self.pipeline = parse_pipeline(parse_yaml(_text(dvc_yaml)), params is not None)
        return self.pipeline

    def read(self, path: str) -> bytes | None:
        """Return a declared file, from the DVC cache where the pipeline caches it."""
        if any(path == out or path.startswith(f"{out}/") for out in self.pipeline.cached):
            if self._cached_from is None:
                data = self._raw(path)
                if data is None:
                    raise Unsupported(f"{path} is a cached output missing from the workspace")
                return data
            return self._cached_from(path, self)
        return self._raw(path)

    def raw(self, path: str) -> bytes | None:
        """Return the file as the revision holds it, ignoring the DVC cache."""
        return self._raw(path)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Unsupported("a dvc.yaml that is not UTF-8") from error


def _from_cache(cache: Path) -> Callable[[str, Side], bytes | None]:
    """Return a reader of a base's cached output by the md5 of the base's dvc.lock."""

    def read(path: str, side: Side) -> bytes | None:
        if side.raw(path) is not None:
            raise Unsupported(f"{path} is both in git and a cached output")
        lock = side.raw("dvc.lock")
        entry = locked_outputs(parse_yaml(_text(lock))).get(path) if lock is not None else None
        md5 = entry.get("md5") if entry else None
        if not isinstance(md5, str) or not MD5.fullmatch(md5):  # a directory's ends in .dir
            raise Unsupported(f"{path}: no file md5 in the base's dvc.lock")
        file = cache / "files" / "md5" if entry and entry.get("hash") == "md5" else cache
        file = file / md5[:2] / md5[2:]
        if not file.is_file():
            raise Unsupported(f"{path}: the base's copy is not in the DVC cache")
        return file.read_bytes()

    return read


def _check_layout(names: list[str], read: Reader) -> None:
    """Refuse what makes DVC read more than the root dvc.yaml: nested pipelines, ignores, subrepos."""
    for name in names:
        base = os.path.basename(name)
        if base == "dvc.yaml" and name != "dvc.yaml":
            raise Unsupported(f"a nested pipeline {name}")
        if "/.dvc/" in f"/{name}" and not name.startswith(".dvc/"):
            raise Unsupported(f"a DVC subrepository at {name}")
        if base == ".dvcignore" and any(
            line.strip() and not line.lstrip().startswith(b"#") for line in (read(name) or b"").splitlines()
        ):
            raise Unsupported(f"patterns in {name}")
        if name.endswith(".dvc") and any(marker in (read(name) or b"") for marker in DVC_FILE_MARKERS):
            raise Unsupported(f"{name} declares a stage, metrics or plots")


def _revision(side: Side) -> Revision:
    """Read params, metrics and plot rows of one revision as DVC's API would give them."""
    pipeline = side.pipeline
    params = {}
    for path, keys in pipeline.params.items():
        data = side.read(path)
        if data is not None:
            params[path] = {"data": select_params(load_values(path, data), keys)}
    metrics = {}
    for path in pipeline.metrics:
        data = side.read(path)
        if data is not None:
            metrics[path] = {"data": read_metric(path, data)}
    return Revision(flat_files(params), flat_files(metrics), row_files(_plot_sources(side)))


def _plot_sources(side: Side) -> dict[str, Any]:
    """Return {file: {"data": parsed}} of every file the revision's plots read."""
    sources = {}
    for path, props in side.pipeline.data_sources().items():
        extension = os.path.splitext(path)[1]
        if extension in IMAGE_EXTENSIONS:
            continue
        data = side.read(path)  # a directory raises Unsupported: DVC would unpack it
        if data is not None and extension in ROW_EXTENSIONS:
            rows = load_rows(path, data, props.get("header", True) is not False)
            if rows:  # DVC keeps no data of an empty file (`dvc.utils.error_handler`)
                sources[path] = {"data": rows}
    return sources


def _workspace_plot_dirs(project: Path, pipeline: Pipeline) -> None:
    """Refuse a plot declared by a directory, which DVC unpacks into its files."""
    for group in pipeline.plots.values():
        for plot_id, props in group["data"].items():
            if not isinstance((props or {}).get("y"), dict) and (project / plot_id).is_dir():
                raise Unsupported(f"the plot {plot_id} is a directory")


def collect_from_git(project: Path, base_commit: str | None) -> Collected:
    """Read the workspace and (when given) the base commit, as `collect_with_dvc` would."""
    prefix = subprocess.run(
        ["git", "rev-parse", "--show-prefix"], cwd=project, capture_output=True, text=True, check=False
    )
    if prefix.returncode != 0 or prefix.stdout.strip() or not (project / ".dvc").is_dir():
        raise Unsupported("the project is not both the git and the DVC root")
    config = read_config(project)
    head = Side(lambda path: read_workspace(project, path))
    _check_layout(listed(project, "ls-files", "-z", "--cached", "--others", "--exclude-standard"), head.raw)
    head_pipeline = head.load_pipeline()
    _workspace_plot_dirs(project, head_pipeline)
    definitions, images = named_plots(head_pipeline.plots)
    head_revision = _revision(head)
    if base_commit is None:
        return Collected(head_revision, Revision(), definitions, images, remote_of(config))
    with CommitFiles(project, base_commit) as files:
        base = Side(files.read, _from_cache(cache_dir(project, config)))
        _check_layout(listed(project, "ls-tree", "-r", "-z", "--name-only", base_commit), base.raw)
        base.load_pipeline()
        base_revision = _revision(base)
    return Collected(head_revision, base_revision, definitions, images, remote_of(config))
