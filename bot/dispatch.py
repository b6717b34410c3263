"""Start an orbit workflow run and record it: the one way a run becomes orbit's (see `bot.runs`).

A trigger (a push, a comment, a merge) starts at most one run: a redelivered event finds the run it
started already recorded and dispatches nothing. GitHub answers the dispatch with the run's id
(`return_run_details`); the run's own record (its commit, its workflow file) is read back from the
API, never from an event, and stored before anything acts on the run's events.
"""

import asyncio
import functools

from bot.context import Store
from bot.events import Repo, WorkflowRunEvent
from bot.github.actions import Workflows
from bot.runs import (
    DeployRun,
    ObservedRun,
    RecordedRun,
    TrainingRun,
    by_trigger,
    effect_done,
    job_rejection,
    mark_done,
    record,
    recorded,
    refuse,
    rejection,
)


async def dispatch(
    github: Workflows,
    store: Store,
    repo: Repo,
    purpose: str,
    workflow: str,
    branch: str,
    run: TrainingRun | DeployRun,
    trigger: str,
) -> RecordedRun:
    """Dispatch `workflow` on `branch` for `run` unless `trigger` already started one; return the record."""
    done = await asyncio.to_thread(
        store.read, functools.partial(by_trigger, repository=repo.full_name, trigger=trigger)
    )
    if done is not None:
        return done
    run_id = await github.dispatch_workflow(repo, workflow, branch, run.inputs)
    started = await github.workflow_run(repo, run_id)
    recorded = RecordedRun(run_id, repo.full_name, purpose, workflow, trigger, run.title, started.head_sha)
    await asyncio.to_thread(store.write, functools.partial(record, run=recorded))
    return recorded


def observed(event: WorkflowRunEvent) -> ObservedRun:
    """Return what a `workflow_run` event says of its run, to be checked against the record."""
    run = event.workflow_run
    return ObservedRun(
        run_id=run.id,
        repository=event.repository.full_name if event.repository else "",
        path=run.path or "",
        event=run.event or "",
        head_repository=run.head_repository.full_name if run.head_repository else "",
        head_sha=run.head_sha or "",
    )


async def accepted(store: Store, seen: ObservedRun, purpose: str) -> RecordedRun | None:
    """Return the record of an orbit run of that purpose whose every field matches, else None (refused)."""
    found = await asyncio.to_thread(store.read, functools.partial(recorded, run_id=seen.run_id))
    reason = rejection(found, seen, purpose)
    if reason is not None:
        refuse(seen, reason)
        return None
    return found


async def already_done(store: Store, run_id: int, effect: str) -> bool:
    """Return whether the run's effect was carried out before (a replayed event)."""
    return await asyncio.to_thread(store.read, functools.partial(effect_done, run_id=run_id, effect=effect))


async def done(store: Store, run_id: int, effect: str) -> None:
    """Record that the run's effect was carried out."""
    await asyncio.to_thread(store.write, functools.partial(mark_done, run_id=run_id, effect=effect))


async def accepted_job(store: Store, repository: str, run_id: int, head_sha: str) -> RecordedRun | None:
    """Return the record of the run a job belongs to when orbit dispatched it, else None (refused).

    Labels prove nothing: any workflow may ask for `[self-hosted, orbit-gpu]`.
    """
    found = await asyncio.to_thread(store.read, functools.partial(recorded, run_id=run_id))
    reason = job_rejection(found, repository, head_sha)
    if reason is not None:
        refuse(ObservedRun(run_id, repository, "", "", "", head_sha), reason)
        return None
    return found
