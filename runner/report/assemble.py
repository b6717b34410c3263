"""Assemble one run's report: read both revisions, have the figures drawn, judge the change.

`runner.report.build` imports this module once the child that draws the figures has started. The
figures are sent to it first; the modules only the judging needs are imported after that.
"""

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runner.report.baseline import read_at
from runner.report.bundle import Facts, Image, Report, Stages
from runner.report.collect import Collected, collect
from runner.report.compare import metrics_diff, params_diff
from runner.report.drawing import Drawer, figure_file
from runner.report.facts import device, stages_from_log
from runner.report.plotdata import plot_data
from runner.report.redact import tail
from runner.report.runrecord import RunRecord
from runner.report.text import slug

LOG_TAIL_LINES = 25
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".gif")


@dataclass(frozen=True)
class Revisions:
    """The project and the two revisions compared: the workspace (at `head_commit`) and the base."""

    project: Path
    base_ref: str
    base_commit: str
    head_commit: str


def _clear(out: Path) -> None:
    """Remove an earlier bundle's files, so that none of them is taken for this run's."""
    out.mkdir(parents=True, exist_ok=True)
    for path in out.iterdir():
        if path.is_file() and (path.suffix.lower() in IMAGE_TYPES or path.name.startswith("report.")):
            path.unlink()


def _copy_images(
    collected: Collected, revisions: Revisions, out: Path, taken: set[str], missing: list[str]
) -> list[Image]:
    """Copy the images the pipeline drew into the bundle, each marked whether it changed visibly.

    `taken`: the names already used in `out`, the figures being drawn included.
    """
    from runner.report.imagediff import visibly_changed  # once the figures are sent: see above

    images = []
    for path in collected.images:
        source = revisions.project / path
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
        changed = visibly_changed(
            source.read_bytes(), read_at(revisions.project, revisions.base_commit, path)
        )
        images.append(Image(title=source.stem.replace("_", " "), image=name, changed=changed))
    return images


def assemble(revisions: Revisions, out: Path, run: RunRecord, drawer: Drawer) -> Report:
    """Compare the workspace with the base and return the report; `drawer` draws its figures into `out`."""
    project, base_commit = revisions.project, revisions.base_commit
    with ThreadPoolExecutor(1) as background:
        gpus = background.submit(device)  # nvidia-smi may take a while: it waits, this process reads
        collected = collect(project, base_commit)
        _clear(out)
        curves, confusions, missing = plot_data(collected)
        curves = [curve.model_copy(update={"image": figure_file(curve.title)}) for curve in curves]
        confusions = [c.model_copy(update={"image": figure_file(c.title)}) for c in confusions]
        drawer.draw(out, curves, confusions)
        from runner.report.significance import judge_change  # once the figures are sent: see above

        stages = stages_from_log(run.log) if run.log else Stages()
        significance, note = (
            ([], None) if stages.failed else judge_change(project, base_commit, revisions.base_ref)
        )
        figures = [curve.image for curve in curves] + [confusion.image for confusion in confusions]
        taken = {path.name for path in out.iterdir()} | {name for name in figures if name}
        images = _copy_images(collected, revisions, out, taken, missing)
        facts = Facts(
            commit=revisions.head_commit,
            base_ref=revisions.base_ref,
            base_commit=base_commit,
            duration_seconds=run.duration_seconds,
            device=gpus.result(),
            remote=collected.remote,
        )
    return Report(
        facts=facts,
        stages=stages,
        params=params_diff(collected.base.params, collected.head.params),
        metrics=metrics_diff(collected.base.metrics, collected.head.metrics),
        base_has_metrics=bool(collected.base.metrics),
        curves=curves,
        confusions=confusions,
        images=images,
        missing_plots=missing,
        log_tail=tail(run.log, LOG_TAIL_LINES) if run.log and stages.failed else [],
        significance=significance,
        significance_note=note,
    )
