"""The training flow's metrics: runner pods by class and phase, queue times, reports and run durations.

Each test reads the default registry before and after the event that moves a metric.
"""

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bot.context import Context
from bot.errors import TemporaryError
from bot.events import WorkflowJob
from runner.jobs import Runners, make_router
from runner.metrics import observe_queue
from runner.report.publish import on_training_run_completed
from tests.fakes import DEFAULT_HEAD, delivery
from tests.github_double import GitHubState
from tests.kube_double import KubeState
from tests.report_fixtures import SHA, bundle_zip, run_payload
from tests.runner.test_reports_publish import context, give_artifact, state  # noqa: F401 - fixtures
from tests.runner.test_runners import (
    github_with,
    handle,
    job,
    kube,  # noqa: F401 - fixture
    orbit_store,
    reconciler,
)
from tests.runs import record_training


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def pods(klass: str, phase: str) -> float:
    value = REGISTRY.get_sample_value("orbit_runner_pods", {"class": klass, "phase": phase})
    assert value is not None, f"no series for {klass}/{phase}: every class and phase is published"
    return value


async def test_the_reconciler_counts_pods_by_class_and_phase_and_a_vanished_one_goes_to_zero(
    kube: tuple[KubeState, Runners],  # noqa: F811 - the fixture
) -> None:
    cluster, runners = kube
    gpu, cpu = job(555), job(556, labels=("self-hosted", "orbit-cpu"))
    github = github_with(gpu, cpu)
    await handle(runners, github, "queued", gpu)
    await handle(runners, github, "queued", cpu)
    cluster.set_status("orbit-runner-555", phase="Running")
    cluster.set_status("orbit-runner-556", phase="Pending")
    labels = {"app.kubernetes.io/managed-by": "orbit", "orbit.dev/class": "made-up"}
    cluster.objects[("pods", "orbit-runners", "stranger")] = {
        "metadata": {"name": "stranger", "namespace": "orbit-runners", "uid": "u-1", "labels": labels},
        "status": {"phase": "Weird"},
    }

    await reconciler(runners, github).run_once()
    assert pods("orbit-gpu", "Running") == 1
    assert pods("orbit-cpu", "Pending") == 1
    assert pods("other", "Unknown") == 1  # an unknown class and phase count under fixed values
    assert pods("orbit-gpu", "Pending") == 0
    assert REGISTRY.get_sample_value("orbit_runner_pods", {"class": "made-up", "phase": "Weird"}) is None

    github.jobs[555] = job(555, status="completed")  # this pass deletes its pod; the next sees none
    await reconciler(runners, github).run_once()
    await reconciler(runners, github).run_once()
    assert pods("orbit-gpu", "Running") == 0
    assert pods("other", "Unknown") == 0
    assert pods("orbit-cpu", "Pending") == 1


def in_progress_event(run_id: int, created: str, started: str | None) -> dict[str, Any]:
    job_payload: dict[str, Any] = {
        "id": 555,
        "run_id": run_id,
        "status": "in_progress",
        "labels": ["self-hosted", "orbit-gpu"],
        "head_sha": DEFAULT_HEAD,
        "runner_name": "orbit-runner-555",
        "created_at": created,
    }
    if started is not None:
        job_payload["started_at"] = started
    return {
        "action": "in_progress",
        "workflow_job": job_payload,
        "repository": {"full_name": "octo-org/model"},
        "installation": {"id": 42},
    }


def queue_time(klass: str) -> tuple[float, float]:
    labels = {"class": klass}
    return (
        sample("orbit_runner_queue_seconds_count", **labels),
        sample("orbit_runner_queue_seconds_sum", **labels),
    )


async def test_a_job_going_in_progress_observes_its_wait_by_githubs_clock(
    kube: tuple[KubeState, Runners],  # noqa: F811 - the fixture
) -> None:
    _, runners = kube
    github = github_with(job(555, status="in_progress"))
    ctx = Context(github, orbit_store(), {})  # run 77 is orbit's; run 78 is not
    (route,) = make_router(runners).handlers_for("workflow_job", "in_progress")
    before = queue_time("orbit-gpu")
    await route(
        delivery("workflow_job", in_progress_event(77, "2026-11-27T10:00:00Z", "2026-11-27T10:01:35Z")),
        ctx,
    )
    assert queue_time("orbit-gpu") == (before[0] + 1, before[1] + 95)
    await route(
        delivery("workflow_job", in_progress_event(78, "2026-11-27T10:00:00Z", "2026-11-27T10:01:35Z")),
        ctx,
    )
    assert queue_time("orbit-gpu") == (before[0] + 1, before[1] + 95), "another workflow's job is not timed"


def test_without_githubs_start_time_the_wait_runs_to_the_bots_clock() -> None:
    before = queue_time("orbit-cpu")
    waited = observe_queue(
        "orbit-cpu",
        WorkflowJob(id=1, run_id=2, created_at="2026-11-27T10:00:00Z"),
        datetime(2026, 11, 27, 10, 0, 40, tzinfo=UTC),
    )
    assert waited == 40
    assert observe_queue("orbit-cpu", WorkflowJob(id=1, run_id=2)) is None  # no queued time: nothing to say
    assert queue_time("orbit-cpu") == (before[0] + 1, before[1] + 40)


def reports(outcome: str) -> float:
    return sample("orbit_reports_published_total", outcome=outcome)


def durations(conclusion: str) -> tuple[float, float]:
    labels = {"kind": "training", "conclusion": conclusion}
    return (
        sample("orbit_run_duration_seconds_count", **labels),
        sample("orbit_run_duration_seconds_sum", **labels),
    )


async def finish_timed(ctx: Context, run_id: int, conclusion: str = "success") -> None:
    payload = run_payload(run_id, conclusion=conclusion)
    payload["workflow_run"] |= {
        "run_started_at": "2026-11-27T10:00:00Z",
        "updated_at": "2026-11-27T10:20:00Z",
    }
    await on_training_run_completed(delivery("workflow_run", payload), ctx)


async def test_a_published_report_counts_once_and_times_its_run(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    give_artifact(state, 100, bundle_zip())
    record_training(context.store, 100, sha=SHA)
    published, failed, timed = reports("published"), reports("failed"), durations("success")
    await finish_timed(context, 100)
    await finish_timed(context, 100)  # a replay: the report is out already
    assert (reports("published") - published, reports("failed") - failed) == (1, 0)
    assert durations("success") == (timed[0] + 1, timed[1] + 1200)


async def test_a_report_that_could_not_be_published_counts_as_failed_and_its_retry_as_published(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    give_artifact(state, 100, bundle_zip())
    record_training(context.store, 100, sha=SHA)
    state.reports.fail_next["PATCH check-runs"] = 502
    published, failed, timed = reports("published"), reports("failed"), durations("failure")
    with pytest.raises(TemporaryError):
        await finish_timed(context, 100, conclusion="failure")
    assert (reports("published") - published, reports("failed") - failed) == (0, 1)
    assert durations("failure") == timed, "a run is timed once its report is out, so a retry times it once"
    await finish_timed(context, 100, conclusion="failure")
    assert (reports("published") - published, reports("failed") - failed) == (1, 1)
    assert durations("failure") == (timed[0] + 1, timed[1] + 1200)


async def test_a_run_that_is_not_orbits_is_neither_reported_nor_timed(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    published, timed = reports("published"), durations("success")
    await finish_timed(context, 101)  # never dispatched by orbit: no record
    assert reports("published") == published
    assert durations("success") == timed
