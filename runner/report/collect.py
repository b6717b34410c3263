"""Read params, metrics and plot data of the workspace and a base revision.

The usual project is read straight from git, the workspace and the DVC cache (gitcollect.py), in
a fraction of the time DVC's API takes; what that reader does not handle (templated or nested
pipelines, directories, a base output missing from the cache, a file that does not parse) is read
through DVC's own API, so that every project still gets DVC's reading and DVC's errors.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.report.collected import Collected, Revision, Rows, flat_files, named_plots, row_files
from runner.report.facts import remote_of
from runner.report.gitcollect import Unsupported, collect_from_git

__all__ = ["WORKSPACE", "Collected", "Revision", "Rows", "collect", "collect_with_dvc"]

WORKSPACE = "workspace"


def collect(project: Path, base_commit: str | None) -> Collected:
    """Read the workspace and (when given) the base commit of the DVC project at `project`."""
    try:
        return collect_from_git(project, base_commit)
    except Unsupported:
        return collect_with_dvc(project, base_commit)


def _files(result: Mapping[str, Any], rev: str) -> dict[str, dict[str, Any]]:
    """Return {file: flattened values} of a params/metrics show result, skipping files in error."""
    return flat_files((result.get(rev) or {}).get("data") or {})


def _plot_rows(result: Mapping[str, Any], rev: str) -> dict[str, Rows]:
    return row_files(((result.get(rev) or {}).get("sources") or {}).get("data") or {})


def _ignore(*_: object, **__: object) -> None:
    """Leave an unreadable plot file out; the report lists it as missing."""


def collect_with_dvc(project: Path, base_commit: str | None) -> Collected:
    """Read the workspace and the base commit through DVC's API (`params`, `metrics`, `plots` show)."""
    from dvc.repo import Repo  # importing DVC costs half a second; only this reader needs it

    revs = [base_commit] if base_commit else []
    with Repo(str(project)) as repo:
        params = repo.params.show(revs=revs, hide_workspace=False)
        metrics = repo.metrics.show(revs=revs, hide_workspace=False)
        plots = repo.plots.show(revs=[WORKSPACE, *revs], onerror=_ignore)
        remote = remote_of(repo.config)
    definitions, images = named_plots(
        ((plots.get(WORKSPACE) or {}).get("definitions") or {}).get("data") or {}
    )

    def revision(rev: str | None) -> Revision:
        if rev is None:
            return Revision()
        return Revision(_files(params, rev), _files(metrics, rev), _plot_rows(plots, rev))

    return Collected(revision(WORKSPACE), revision(base_commit), definitions, images, remote)
