"""`orbit report build`: the bundle of one training run, compared with the base branch.

The bundle is report.json (what the bot reads), report.md (the comment as it would look),
report.html (self-contained) and the PNGs.

This module imports little: the child that draws the figures is forked first, so that it imports
matplotlib while this process imports the rest (runner.report.assemble) and reads the revisions.
"""

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from runner.report.drawing import Drawer
from runner.report.runrecord import RunRecord

if TYPE_CHECKING:
    from runner.report.bundle import Report

__all__ = ["ReportError", "RunRecord", "build_report", "resolve", "write_bundle"]


class ReportError(RuntimeError):
    """The report cannot be built; the message says why."""


def _git(project: Path, *args: str) -> str | None:
    result = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def resolve(project: Path, ref: str) -> str:
    """Return the commit of a branch, tag or SHA, trying `origin/<ref>` as CI checkouts have it."""
    for candidate in (ref, f"origin/{ref}"):
        commit = _git(project, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        if commit:
            return commit
    raise ReportError(
        f"unknown base revision '{ref}': no branch, tag or commit of that name here"
        f" (--base; try: git fetch origin {ref})"
    )


def build_report(project: Path, base: str, out: Path, run: RunRecord | None = None) -> "Report":
    """Compare the workspace with `base`, write the bundle into `out` and return the report."""
    head_commit = _git(project, "rev-parse", "HEAD") or "workspace"
    base_commit = resolve(project, base)
    _import_shared()
    with Drawer() as drawer:
        from runner.report.assemble import Revisions, assemble  # after the fork: see the docstring
        from runner.report.html import html  # imported while the child imports matplotlib

        report = assemble(Revisions(project, base, base_commit, head_commit), out, run or RunRecord(), drawer)
        _write_text(report, out)
        drawer.finish()
    (out / "report.html").write_text(html(report, out))
    return report


def _import_shared() -> None:
    """Import what both processes need (numpy, PIL) once, before the drawing child is forked."""
    import numpy  # noqa: F401  (matplotlib's; and the significance bootstrap's)
    import PIL.Image  # noqa: F401  (matplotlib's PNG writer; and the image comparison's)


def write_bundle(report: "Report", out: Path) -> None:
    """Write report.json, report.md (images linked beside it) and report.html (images inlined)."""
    from runner.report.html import html

    _write_text(report, out)
    (out / "report.html").write_text(html(report, out))


def _write_text(report: "Report", out: Path) -> None:
    from runner.report.render import markdown

    (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n")
    (out / "report.md").write_text(markdown(report, lambda name: name))
