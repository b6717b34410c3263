"""`orbit report build`: the bundle of one training run, compared with the base branch.

The bundle is report.json (what the bot reads), report.md (the comment as it would look),
report.html (self-contained) and the PNGs.
"""

import multiprocessing
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runner.report.baseline import read_at
from runner.report.bundle import Confusion, Curve, Facts, Image, Report, Stages
from runner.report.collect import Collected, collect
from runner.report.compare import metrics_diff, params_diff
from runner.report.facts import device, stages_from_log
from runner.report.html import html
from runner.report.imagediff import visibly_changed
from runner.report.plotdata import plot_data
from runner.report.redact import tail
from runner.report.render import markdown
from runner.report.significance import judge_change
from runner.report.text import slug

LOG_TAIL_LINES = 25
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".gif")


class ReportError(RuntimeError):
    """The report cannot be built; the message says why."""


@dataclass(frozen=True)
class RunRecord:
    """What the job knows of its own run: the `dvc repro` output and how long it took."""

    log: str | None = None
    duration_seconds: float | None = None


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


def _clear(out: Path) -> None:
    """Remove an earlier bundle's files, so that none of them is taken for this run's."""
    out.mkdir(parents=True, exist_ok=True)
    for path in out.iterdir():
        if path.is_file() and (path.suffix.lower() in IMAGE_TYPES or path.name.startswith("report.")):
            path.unlink()


def _copy_images(
    collected: Collected, project: Path, base_commit: str, out: Path, missing: list[str]
) -> list[Image]:
    """Copy the images the pipeline drew into the bundle, each marked whether it changed visibly."""
    images, taken = [], {path.name for path in out.iterdir()}
    for path in collected.images:
        source = project / path
        if not source.is_file():
            missing.append(f"{path} was not produced")
            continue
        if source.suffix.lower() not in IMAGE_TYPES:
            missing.append(f"{path} is not a PNG, JPEG or GIF")
            continue
        name = f"{slug(source.stem)}{source.suffix.lower()}"
        while name in taken:
            name = f"_{name}"
        taken.add(name)
        shutil.copyfile(source, out / name)
        changed = visibly_changed(source.read_bytes(), read_at(project, base_commit, path))
        images.append(Image(title=source.stem.replace("_", " "), image=name, changed=changed))
    return images


def _collect_while_importing_matplotlib(project: Path, base_commit: str) -> Collected:
    """Read DVC in a child process while this one imports matplotlib: each takes about a second."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        future = pool.submit(collect, project, base_commit)
        import runner.report.figures  # noqa: F401

        return future.result()


def _draw(out: Path, curves: list[Curve], confusions: list[Confusion]) -> tuple[list[Curve], list[Confusion]]:
    """Draw every figure, several at once."""
    from runner.report.figures import draw_confusion, draw_curve

    with ProcessPoolExecutor(mp_context=multiprocessing.get_context("fork")) as pool:
        curve_files = pool.map(draw_curve, [out] * len(curves), curves)
        confusion_files = pool.map(draw_confusion, [out] * len(confusions), confusions)
        return (
            [
                curve.model_copy(update={"image": name})
                for curve, name in zip(curves, curve_files, strict=True)
            ],
            [
                c.model_copy(update={"image": name})
                for c, name in zip(confusions, confusion_files, strict=True)
            ],
        )


def build_report(project: Path, base: str, out: Path, run: RunRecord | None = None) -> Report:
    """Compare the workspace with `base`, write the bundle into `out` and return the report."""
    run = run or RunRecord()
    head_commit = _git(project, "rev-parse", "HEAD") or "workspace"
    base_commit = resolve(project, base)
    collected = _collect_while_importing_matplotlib(project, base_commit)
    _clear(out)
    curves, confusions, missing = plot_data(collected)
    curves, confusions = _draw(out, curves, confusions)
    stages = stages_from_log(run.log) if run.log else Stages()
    significance, note = ([], None) if stages.failed else judge_change(project, base_commit, base)
    report = Report(
        facts=Facts(
            commit=head_commit,
            base_ref=base,
            base_commit=base_commit,
            duration_seconds=run.duration_seconds,
            device=device(),
            remote=collected.remote,
        ),
        stages=stages,
        params=params_diff(collected.base.params, collected.head.params),
        metrics=metrics_diff(collected.base.metrics, collected.head.metrics),
        base_has_metrics=bool(collected.base.metrics),
        curves=curves,
        confusions=confusions,
        images=_copy_images(collected, project, base_commit, out, missing),
        missing_plots=missing,
        log_tail=tail(run.log, LOG_TAIL_LINES) if run.log and stages.failed else [],
        significance=significance,
        significance_note=note,
    )
    write_bundle(report, out)
    return report


def write_bundle(report: Report, out: Path) -> None:
    """Write report.json, report.md (images linked beside it) and report.html (images inlined)."""
    (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n")
    (out / "report.md").write_text(markdown(report, lambda name: name))
    (out / "report.html").write_text(html(report, out))
