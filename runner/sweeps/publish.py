"""Publish a sweep as its points finish: record the point's result, then rewrite the sweep's comment.

On `workflow_run` completed for a sweep point orbit dispatched (its record names the experiment),
the point's report bundle gives its metrics, or its failure; the comment is rebuilt from the
recorded points (the unfinished ones asked of GitHub: running or still pending), with a
parallel-coordinates SVG committed to the assets branch as the report's plots are. Safe to repeat.
"""

import asyncio
import functools
import logging
from typing import Any, Protocol

from bot.context import Context, Store
from bot.dispatch import already_done, done, observed
from bot.events import Repo, WorkflowRunEvent
from bot.github import named_artifact
from bot.github.actions import ArtifactTooLarge
from bot.router import Router
from bot.runs import TRAIN, TrainingRun, recorded, rejection
from runner.github import ReportGitHub
from runner.report.artifact import MAX_TOTAL_BYTES, BundleError, read_bundle
from runner.report.assets import publish_images
from runner.report.sticky import neutralise
from runner.sweeps.aggregate import result_of
from runner.sweeps.plot import parallel_coordinates
from runner.sweeps.state import (
    CANCELLED,
    DONE,
    FAILED,
    FINISHED,
    SweepPoint,
    by_experiment,
    points_of,
    record_result,
)
from runner.sweeps.table import marker, sweep_markdown

ARTIFACT = "orbit-report"
PUBLISHED = "sweep point published"
MAX_ARTIFACT_BYTES = MAX_TOTAL_BYTES + 1024 * 1024
router = Router()
log = logging.getLogger(__name__)


class SweepGitHub(ReportGitHub, Protocol):
    """Publishing a sweep: its points' runs and bundles, the plot's branch, the comment."""


async def _outcome(
    github: SweepGitHub, repo: Repo, run_id: int, conclusion: str
) -> tuple[str, dict[str, Any]]:
    """Return a finished point's status and result, from its bundle."""
    if conclusion == "cancelled":
        return CANCELLED, {"note": "cancelled"}
    try:
        data = await named_artifact(github, repo, run_id, ARTIFACT, max_bytes=MAX_ARTIFACT_BYTES)
        bundle = None if data is None else read_bundle(data)
    except (ArtifactTooLarge, BundleError) as error:
        log.warning("sweep point run %s: unreadable bundle: %s", run_id, error)
        return FAILED, {"note": "its report could not be read"}
    if bundle is None:
        return FAILED, {"note": f"the run ended {conclusion or 'without a report'}"}
    if bundle.report.failed:
        return FAILED, {"note": f"stage {bundle.report.stages.failed} failed"}
    return DONE, result_of(bundle.report)


async def _running(github: SweepGitHub, repo: Repo, points: list[SweepPoint]) -> set[int]:
    """Return the unfinished points whose run has started, as GitHub says now."""
    running = set()
    for point in points:
        started = point.status not in FINISHED and point.run_id is not None
        if started and (await github.workflow_run(repo, point.run_id or 0)).status == "in_progress":
            running.add(point.index)
    return running


async def _plot_url(
    github: SweepGitHub, repo: Repo, html_url: str, points: list[SweepPoint], run_id: int
) -> str | None:
    svg = parallel_coordinates(points)
    if svg is None:
        return None
    name = f"sweep-{points[0].sweep}.svg"
    published = await publish_images(github, repo, html_url, points[0].pull, run_id, {name: svg})
    return published.urls[name]


async def refresh(
    github: SweepGitHub, store: Store, repo: Repo, sweep: int, html_url: str, plot_run: int | None = None
) -> None:
    """Rewrite the sweep's one comment from its recorded points (create it the first time)."""
    points = await asyncio.to_thread(
        store.read, functools.partial(points_of, repository=repo.full_name, sweep=sweep)
    )
    if not points:
        return
    url = await _plot_url(github, repo, html_url, points, plot_run) if plot_run is not None else None
    tag = marker(sweep)
    body = f"{tag}\n{neutralise(sweep_markdown(points, await _running(github, repo, points), url))}"
    own, comments = await github.own_login(), await github.issue_comments(repo, points[0].pull)
    mine = next((c for c in comments if c.author == own and c.body.startswith(tag + "\n")), None)
    if mine is None:
        await github.create_comment(repo, points[0].pull, body)
    elif mine.body != body:
        await github.update_comment(repo, mine.id, body)


async def publish_point(
    github: SweepGitHub,
    store: Store,
    repo: Repo,
    html_url: str,
    run_id: int,
    training: TrainingRun,
    conclusion: str,
) -> None:
    """Record a finished sweep point's result and update its sweep's comment."""
    lookup = functools.partial(
        by_experiment, repository=repo.full_name, pull=training.pull, experiment=training.experiment
    )
    point = await asyncio.to_thread(store.read, lookup)
    if point is None:
        log.warning("run %s is sweep point %s, which orbit has no record of", run_id, training.experiment)
        return
    status, result = await _outcome(github, repo, run_id, conclusion)
    write = functools.partial(
        record_result,
        repository=repo.full_name,
        sweep=point.sweep,
        index=point.index,
        status=status,
        result=result,
    )
    await asyncio.to_thread(store.write, write)
    await refresh(github, store, repo, point.sweep, html_url, plot_run=run_id)


@router.on(WorkflowRunEvent, "completed")
async def on_sweep_point_completed(event: WorkflowRunEvent, ctx: Context) -> None:
    """Publish a finished sweep point (the PR's own training runs are `runner.report.publish`'s)."""
    seen = observed(event)
    found = await asyncio.to_thread(ctx.store.read, functools.partial(recorded, run_id=seen.run_id))
    training = found.training if found is not None else None
    if found is None or training is None or not training.sweep or event.repo is None:
        return
    if rejection(found, seen, TRAIN) is not None:
        return  # counted and logged by the report's handler, which refuses it too
    if await already_done(ctx.store, found.run_id, PUBLISHED):
        return
    html_url = (
        event.repository.html_url if event.repository else None
    ) or f"https://github.com/{event.repo.full_name}"
    conclusion = event.workflow_run.conclusion or "neutral"
    await publish_point(ctx.github, ctx.store, event.repo, html_url, found.run_id, training, conclusion)
    await done(ctx.store, found.run_id, PUBLISHED)
