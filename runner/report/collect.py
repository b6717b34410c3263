"""Read params, metrics and plot data of the workspace and a base revision through DVC's own API."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.report.compare import flatten
from runner.report.facts import remote_of

WORKSPACE = "workspace"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")
Rows = list[dict[str, str]]


@dataclass
class Revision:
    """What DVC knows of one revision: flattened params and metrics per file, plot rows per file."""

    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    plot_rows: dict[str, Rows] = field(default_factory=dict)


@dataclass
class Collected:
    """Head (the workspace) and base, and the plot definitions of the head."""

    head: Revision
    base: Revision
    definitions: dict[str, dict[str, Any]]
    images: list[str]
    remote: str | None = None


def _files(result: Mapping[str, Any], rev: str) -> dict[str, dict[str, Any]]:
    """Return {file: flattened values} of a params/metrics show result, skipping files in error."""
    files = (result.get(rev) or {}).get("data") or {}
    return {
        path: dict(flatten(entry["data"]))
        for path, entry in files.items()
        if isinstance(entry, Mapping) and isinstance(entry.get("data"), Mapping)
    }


def _plot_rows(result: Mapping[str, Any], rev: str) -> dict[str, Rows]:
    sources = ((result.get(rev) or {}).get("sources") or {}).get("data") or {}
    return {
        path: entry["data"]
        for path, entry in sources.items()
        if isinstance(entry, Mapping) and isinstance(entry.get("data"), list)
    }


def _definitions(result: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Return the named plot definitions of dvc.yaml files, and the image files declared as plots."""
    named: dict[str, dict[str, Any]] = {}
    images: list[str] = []
    groups = ((result.get(WORKSPACE) or {}).get("definitions") or {}).get("data") or {}
    for config_file, group in groups.items():
        for name, props in ((group or {}).get("data") or {}).items():
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                images.append(name)
            elif config_file and isinstance(props, Mapping) and isinstance(props.get("y"), Mapping):
                named[str(name)] = dict(props)
    return named, sorted(dict.fromkeys(images))


def _ignore(*_: object, **__: object) -> None:
    """Leave an unreadable plot file out; the report lists it as missing."""


def collect(project: Path, base_commit: str | None) -> Collected:
    """Read the workspace and (when given) the base commit of the DVC project at `project`."""
    from dvc.repo import Repo  # importing DVC costs half a second; only the builder needs it

    revs = [base_commit] if base_commit else []
    with Repo(str(project)) as repo:
        params = repo.params.show(revs=revs, hide_workspace=False)
        metrics = repo.metrics.show(revs=revs, hide_workspace=False)
        plots = repo.plots.show(revs=[WORKSPACE, *revs], onerror=_ignore)
        remote = remote_of(repo.config)
    definitions, images = _definitions(plots)

    def revision(rev: str | None) -> Revision:
        if rev is None:
            return Revision()
        return Revision(_files(params, rev), _files(metrics, rev), _plot_rows(plots, rev))

    return Collected(revision(WORKSPACE), revision(base_commit), definitions, images, remote)
