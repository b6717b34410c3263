"""Publish a finished training run: plots into the repository, one sticky PR comment, the check run.

On `workflow_run` completed for a run of train.yml (its run name ties it to a PR and commit), the
bundle artifact is read, its images committed to the assets branch, and the report rendered by the
bot itself from report.json; a run without a bundle gets the end of its failing step's log instead.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from bot import logs
from bot.context import Context, Store
from bot.dispatch import accepted, already_done, done, observed
from bot.events import Repo, WorkflowRunEvent
from bot.github import CheckUpdate, named_artifact
from bot.github.actions import ArtifactTooLarge
from bot.github.pulls import Pulls
from bot.metrics import observe_run
from bot.router import Router
from bot.runs import TRAIN, RecordedRun
from runner import checks, metrics
from runner.github import ReportGitHub
from runner.report.artifact import MAX_TOTAL_BYTES, Bundle, BundleError, read_bundle
from runner.report.assets import publish_images
from runner.report.bundle import Report
from runner.report.failure import failure_markdown
from runner.report.gates import gate_inputs, gated
from runner.report.render import markdown
from runner.report.sticky import MARKER, compose, neutralise
from runner.report.text import number
from runner.training import active_runs

ARTIFACT = "orbit-report"
PUBLISHED = "report published"
MAX_ARTIFACT_BYTES = MAX_TOTAL_BYTES + 1024 * 1024  # the zip of what a bundle may unpack to
CHECK_CONCLUSIONS = frozenset({"success", "failure", "cancelled", "timed_out", "neutral", "skipped", "stale"})
router = Router()
log = logging.getLogger(__name__)


class PublishGitHub(ReportGitHub, Pulls, Protocol):
    """Publishing, and reading the gates of `.github/orbit.yml` from the pull request's base branch."""


@dataclass(frozen=True)
class FinishedRun:
    """A completed training run of one pull request's commit."""

    repo: Repo
    run_id: int
    pull: int
    sha: str
    conclusion: str
    url: str
    workflow: str
    html_url: str


def finished_run(event: WorkflowRunEvent, record: RecordedRun) -> FinishedRun | None:
    """Read the finished run from the event and what orbit recorded when it dispatched it."""
    repo, run, training = event.repo, event.workflow_run, record.training
    if repo is None or training is None:
        return None
    return FinishedRun(
        repo=repo,
        run_id=run.id,
        pull=training.pull,
        sha=training.sha,  # a dispatched run's own head_sha is the default branch's, not the PR's
        conclusion=run.conclusion or "neutral",
        url=run.html_url or "",
        workflow=record.workflow,
        html_url=(event.repository.html_url if event.repository else None)
        or f"https://github.com/{repo.full_name}",
    )


async def _superseded(github: ReportGitHub, store: Store, run: FinishedRun) -> bool:
    """Tell whether a cancelled run was superseded: its check is closed, or its PR has a newer run."""
    if not await checks.is_training(github, run.repo, run.sha):
        return True
    newer = await active_runs(github, store, run.repo, run.workflow, run.pull)
    return any(other.id > run.run_id for other, _ in newer)


async def _bundle(github: ReportGitHub, run: FinishedRun) -> Bundle | None:
    try:
        data = await named_artifact(github, run.repo, run.run_id, ARTIFACT, max_bytes=MAX_ARTIFACT_BYTES)
    except ArtifactTooLarge as error:
        raise BundleError(str(error)) from error
    return None if data is None else read_bundle(data)


async def _report_markdown(github: ReportGitHub, run: FinishedRun, bundle: Bundle) -> str:
    urls: dict[str, str] = {}
    if bundle.images:
        published = await publish_images(github, run.repo, run.html_url, run.pull, run.run_id, bundle.images)
        urls = published.urls
    return await asyncio.to_thread(markdown, bundle.report, urls)  # linear, capped, off the event loop


def check_title(report: Report | None, conclusion: str) -> str:
    """Return the check run's one-line title: the first metric's change and its verdict, or the outcome."""
    if report is None:
        return {"success": "Training finished", "cancelled": "Training cancelled"}.get(
            conclusion, f"Training {conclusion.replace('_', ' ')}"
        )
    if report.failed:
        return f"Stage {report.stages.failed} failed"
    main = next((row for row in report.metrics if "." not in row.key), None)
    if main is None or main.head is None:
        return "Training finished"
    delta = main.delta
    parts = [f"{'+' if delta > 0 else ''}{number(delta)}"] if delta else []
    judged = next((row for row in report.significance if row.key == main.key), None)
    if judged is not None:
        parts.append(judged.verdict)
    return f"{main.key} {number(main.head)}" + (f" ({', '.join(parts)})" if parts else "")


def check_conclusion(report: Report | None, conclusion: str) -> str:
    """Return the check run's conclusion for the workflow's conclusion and the report."""
    if report is not None and report.failed:
        return "failure"
    return conclusion if conclusion in CHECK_CONCLUSIONS else "failure"


async def upsert_comment(github: ReportGitHub, repo: Repo, pull: int, run_id: int, section: str) -> None:
    """Update the PR's report comment with this run on top, or create it."""
    comments, own = await github.issue_comments(repo, pull), await github.own_login()
    mine = next((c for c in comments if c.author == own and MARKER in c.body), None)  # never another's
    body = compose(mine.body if mine else None, run_id, section)
    if mine is None:
        await github.create_comment(repo, pull, body)
    else:
        await github.update_comment(repo, mine.id, body)


@router.on(WorkflowRunEvent, "completed")
async def on_training_run_completed(event: WorkflowRunEvent, ctx: Context) -> None:
    """Publish the report of a finished training run."""
    github: PublishGitHub = ctx.github
    logs.bind(run_id=event.workflow_run.id)
    record = await accepted(ctx.store, observed(event), TRAIN)
    if record is not None and record.training is not None and record.training.sweep:
        return  # a sweep point: runner.sweeps.publish publishes it
    run = finished_run(event, record) if record is not None else None
    if run is None or await already_done(ctx.store, run.run_id, PUBLISHED):
        return  # not orbit's run, or its report is out already (a replayed event)
    if run.conclusion == "cancelled" and await _superseded(github, ctx.store, run):
        _observe_duration(event)
        return
    try:
        await _publish(github, run)
    except Exception:
        metrics.REPORTS_PUBLISHED.labels(metrics.FAILED).inc()
        raise
    metrics.REPORTS_PUBLISHED.labels(metrics.PUBLISHED).inc()
    await done(ctx.store, run.run_id, PUBLISHED)
    _observe_duration(event)


def _observe_duration(event: WorkflowRunEvent) -> None:
    """Observe the finished run's duration by GitHub's clock, once its effects are done."""
    run = event.workflow_run
    observe_run("training", run.conclusion or "", run.run_started_at, run.updated_at)


async def _publish(github: PublishGitHub, run: FinishedRun) -> None:
    report: Report | None = None
    try:
        bundle = await _bundle(github, run)
    except BundleError as error:
        bundle, section = None, f"### The report of `{run.sha[:7]}` could not be read\n\n{error}"
    else:
        if bundle is None:
            section = await failure_markdown(github, run.repo, run.run_id, run.sha, run.conclusion, run.url)
        else:
            report, section = bundle.report, await _report_markdown(github, run, bundle)
    section = neutralise(section) + f"\n\n<sub>[workflow run {run.run_id}]({run.url})</sub>"
    await upsert_comment(github, run.repo, run.pull, run.run_id, section)
    update = CheckUpdate(
        conclusion=check_conclusion(report, run.conclusion),
        title=check_title(report, run.conclusion),
        summary=section,
        details_url=run.url or None,
    )
    if report is not None and not report.failed:
        update = gated(update, await gate_inputs(github, run.repo, run.pull, run.sha), report)
    await checks.update_open(github, run.repo, run.sha, update)
