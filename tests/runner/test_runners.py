"""Runner pods for workflow jobs, and the reconciler, against the Kubernetes API double and a GitHub fake."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from bot.context import Context
from bot.events import Repo
from bot.github import JobInfo, RunInfo
from bot.github.calls import Conflict
from bot.inbox import Inbox
from bot.runs import TrainingRun
from runner.classes import default_classes
from runner.jobs import Runners, make_router
from runner.kube import KubeCluster
from runner.reconcile import Reconciler
from tests.fakes import DEFAULT_HEAD, FakeApp, FakeGitHub, delivery, flaky, memory_inbox
from tests.kube_double import KubeState, serve_kube
from tests.runs import record_training

REPO = Repo("octo-org", "model")
SHA = "c" * 40


@pytest.fixture
def kube() -> Iterator[tuple[KubeState, Runners]]:
    state = KubeState()
    with serve_kube(state) as url:
        cluster = KubeCluster("orbit-runners", client.ApiClient(client.Configuration(host=url)))
        yield state, Runners(cluster, default_classes("ghcr.io/octo-org/runner:1", "nvidia.com/gpu", 2))


def job(
    job_id: int,
    status: str = "queued",
    labels: tuple[str, ...] = ("self-hosted", "orbit-gpu"),
    created: str = "",
) -> JobInfo:
    return JobInfo(
        job_id,
        77,
        status,
        list(labels),
        DEFAULT_HEAD,  # a dispatched run's jobs run the default branch's commit
        f"https://github.com/o/r/actions/runs/77/job/{job_id}",
        f"orbit-runner-{job_id}" if status != "queued" else "",
        created or f"2026-11-27T10:00:{job_id % 60:02d}Z",
        "train PR #7",
    )


def job_event(action: str, info: JobInfo) -> dict[str, Any]:
    return {
        "action": action,
        "workflow_job": {
            "id": info.id,
            "run_id": info.run_id,
            "status": info.status,
            "labels": info.labels,
            "head_sha": info.head_sha,
            "html_url": info.html_url,
            "runner_name": info.runner_name,
        },
        "repository": {"full_name": "octo-org/model"},
        "installation": {"id": 42},
    }


def github_with(*jobs: JobInfo) -> FakeGitHub:
    github = FakeGitHub()
    github.jobs = {j.id: j for j in jobs}
    github.runs = [RunInfo(77, "in_progress", TrainingRun(7, SHA).title, DEFAULT_HEAD)]
    return github


def orbit_store() -> Inbox:
    """Return a store in which run 77, training PR #7 at SHA, is one orbit dispatched."""
    store = memory_inbox()
    record_training(store, 77, pull=7, sha=SHA)
    return store


async def handle(runners: Runners, github: FakeGitHub, action: str, info: JobInfo) -> None:
    router = make_router(runners)
    context = Context(github, orbit_store(), {})
    for handler in router.handlers_for("workflow_job", action):
        await handler(delivery("workflow_job", job_event(action, info)), context)


async def test_a_queued_job_gets_a_pod_and_a_secret_and_nothing_leaks(
    kube: tuple[KubeState, Runners],
) -> None:
    state, runners = kube
    github = github_with(job(555))
    await handle(runners, github, "queued", job(555))
    pod = state.of("pods")["orbit-runner-555"]
    secret = state.of("secrets")["orbit-runner-555"]
    assert github.named("get_job") == [("octo-org/model", 555)]  # still queued? asked of the API
    assert github.named("jit") == [("octo-org/model", "orbit-runner-555", ("self-hosted", "orbit-gpu"), None)]
    assert secret["stringData"]["jitconfig"] == "JITCONFIG-SECRET-orbit-runner-555"
    assert "JITCONFIG-SECRET" not in str(pod)
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    assert pod["metadata"]["labels"]["orbit.dev/pull-request"] == "7"
    assert pod["metadata"]["annotations"] == {
        "orbit.dev/repository": "octo-org/model",
        "orbit.dev/installation": "42",
    }


async def test_a_redelivered_event_creates_nothing_new(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = github_with(job(555))
    for _ in range(3):
        await handle(runners, github, "queued", job(555))
    assert len(state.of("pods")) == 1
    assert len(github.named("jit")) == 1


async def test_a_job_no_longer_queued_gets_no_pod(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = github_with(job(555, status="completed"))
    await handle(runners, github, "queued", job(555))
    assert state.of("pods") == {}
    assert github.named("jit") == []


async def test_a_job_github_does_not_know_gets_no_pod(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = github_with()
    await handle(runners, github, "queued", job(555))
    assert state.of("pods") == {}
    assert github.named("jit") == []


async def test_jobs_for_other_runners_are_ignored(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = github_with()
    await handle(runners, github, "queued", job(556, labels=("ubuntu-latest",)))
    assert github.calls == []
    assert state.of("pods") == {}


async def test_a_pod_that_cannot_be_created_unregisters_its_runner(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = github_with(job(555))
    state.fail_next_create = [403]
    with pytest.raises(Exception, match="403"):
        await handle(runners, github, "queued", job(555))
    assert github.named("delete_runner") == [("octo-org/model", 9000)]
    assert state.of("pods") == {}


async def test_with_a_runner_group_every_runner_is_registered_and_removed_in_the_organisation(
    kube: tuple[KubeState, Runners],
) -> None:
    state, repository_runners = kube
    runners = Runners(repository_runners.cluster, repository_runners.classes, runner_group_id=7)
    github = github_with(job(555), job(556))
    await handle(runners, github, "queued", job(555))
    assert github.named("jit") == [("octo-org/model", "orbit-runner-555", ("self-hosted", "orbit-gpu"), 7)]
    await handle(runners, github, "completed", job(555, status="completed"))
    assert github.named("find_runner") == [("octo-org/model", "orbit-runner-555", "organization")]
    assert github.named("delete_runner") == [("octo-org/model", 9000, "organization")]
    state.fail_next_create = [403]
    with pytest.raises(Exception, match="403"):
        await handle(runners, github, "queued", job(556))
    assert [call[2:] for call in github.named("delete_runner")] == [("organization",), ("organization",)]


async def test_in_progress_shows_the_runner_and_log_on_the_check_run(kube: tuple[KubeState, Runners]) -> None:
    _, runners = kube
    github = github_with(job(555, status="in_progress"))
    check = await github.create_check_run(REPO, SHA, "orbit/train", "Training queued", "")
    await handle(runners, github, "in_progress", job(555, status="in_progress"))
    ((_, check_id, update),) = github.named("update_check")
    assert check_id == check
    assert update.status == "in_progress"
    assert "orbit-runner-555" in update.summary
    assert update.details_url == "https://github.com/o/r/actions/runs/77/job/555"


async def test_completed_removes_pod_secret_and_runner(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = github_with(job(555))
    await handle(runners, github, "queued", job(555))
    await handle(runners, github, "completed", job(555, status="completed"))
    assert state.of("pods") == {}
    assert state.of("secrets") == {}
    assert github.runners == {}


def reconciler(runners: Runners, github: FakeGitHub, now: datetime | None = None) -> Reconciler:
    return Reconciler(
        runners,
        FakeApp(github),
        lambda: [(42, "octo-org/model")],
        orbit_store(),
        pending_limit_s=600,
        now=(lambda: now) if now else (lambda: datetime.now(UTC)),
    )


async def test_a_lost_webhook_is_recovered_and_the_cap_holds_the_rest_oldest_first(
    kube: tuple[KubeState, Runners],
) -> None:
    state, runners = kube
    queued = [job(600 + i, created=f"2026-11-27T10:00:0{9 - i}Z") for i in range(4)]  # 603 is the oldest
    github = github_with(*queued)
    outcome = await reconciler(runners, github).run_once()
    assert outcome.started == [603, 602]  # ORBIT_MAX_GPU_RUNNERS is 2 in this fixture
    assert sorted(state.of("pods")) == ["orbit-runner-602", "orbit-runner-603"]
    github.jobs[603] = job(603, status="completed")
    again = await reconciler(runners, github).run_once()
    assert again.deleted == ["orbit-runner-603"]
    assert again.started == [601]


async def test_orphans_and_unknown_jobs_are_deleted(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = github_with(job(555))
    await handle(runners, github, "queued", job(555))
    del github.jobs[555]  # GitHub no longer knows the job
    outcome = await reconciler(runners, github).run_once()
    assert outcome.deleted == ["orbit-runner-555"]
    assert state.of("pods") == {}


async def test_a_pod_pending_too_long_is_reported_with_the_reason(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = github_with(job(555))
    await handle(runners, github, "queued", job(555))
    github.jobs[555] = job(555)
    await github.create_check_run(REPO, SHA, "orbit/train", "Training queued", "")
    state.add_event("orbit-runner-555", "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")
    later = datetime.now(UTC) + timedelta(minutes=15)
    outcome = await reconciler(runners, github, now=later).run_once()
    assert outcome.reported_pending == ["orbit-runner-555"]
    update = github.named("update_check")[-1][2]
    assert "Insufficient nvidia.com/gpu" in update.summary
    assert "orbit-runner-555" in state.of("pods")


async def test_a_pod_past_its_deadline_is_deleted_and_the_check_fails(
    kube: tuple[KubeState, Runners],
) -> None:
    state, runners = kube
    github = github_with(job(555))
    await handle(runners, github, "queued", job(555))
    github.jobs[555] = job(555, status="in_progress")
    check = await github.create_check_run(REPO, SHA, "orbit/train", "Training", "")
    state.set_status("orbit-runner-555", phase="Failed", reason="DeadlineExceeded")
    outcome = await reconciler(runners, github).run_once()
    assert outcome.deadline_exceeded == ["orbit-runner-555"]
    assert state.of("pods") == {}
    assert github.check_run_status[check] == "completed"
    assert github.named("update_check")[-1][2].conclusion == "failure"


async def test_a_restart_in_the_middle_leaves_no_orphan_and_no_duplicate(
    kube: tuple[KubeState, Runners],
) -> None:
    state, runners = kube
    github = github_with(job(555), job(556))
    await handle(runners, github, "queued", job(555))  # the bot dies before handling 556
    state.objects.pop(("secrets", "orbit-runners", "orbit-runner-555"))  # ...and between pod and secret
    state.set_waiting("orbit-runner-555", "CreateContainerConfigError")  # what the kubelet reports
    fresh = Runners(runners.cluster, runners.classes)  # a new process
    first = await reconciler(fresh, github).run_once()
    assert first.deleted == ["orbit-runner-555"]
    await reconciler(fresh, github).run_once()
    await reconciler(fresh, github).run_once()
    assert sorted(state.of("pods")) == ["orbit-runner-555", "orbit-runner-556"]
    assert sorted(state.of("secrets")) == ["orbit-runner-555", "orbit-runner-556"]
    assert github.runners.keys() == {"orbit-runner-555", "orbit-runner-556"}  # the stale registration is gone


async def test_a_job_that_merely_carries_orbits_labels_gets_nothing(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    stranger = JobInfo(
        901, 66, "queued", ["self-hosted", "orbit-gpu"], "e" * 40, "", "", "2026-11-27T10:00:00Z"
    )
    github = github_with(stranger)
    github.runs.append(
        RunInfo(66, "queued", TrainingRun(7, SHA).title, "e" * 40)
    )  # a fork's run, orbit's title
    await handle(runners, github, "queued", stranger)
    outcome = await reconciler(runners, github).run_once()
    assert state.of("pods") == {} and state.of("secrets") == {}, "no runner pod for a run orbit did not start"
    assert github.named("jit") == [], "no runner registered for it"
    assert outcome.started == []


async def test_a_recorded_runs_job_shows_on_the_check_of_the_commit_it_trains(
    kube: tuple[KubeState, Runners],
) -> None:
    _, runners = kube
    github = github_with(job(555))
    check = await github.create_check_run(REPO, SHA, "orbit/train", "Training queued", "")
    await handle(runners, github, "in_progress", job(555, status="in_progress"))
    assert github.check_run_status[check] == "in_progress", "the PR's commit, not the default branch's"


async def test_build_pods_run_in_their_own_namespace_and_the_reconciler_finds_them_there(
    kube: tuple[KubeState, Runners],
) -> None:
    state, runners = kube
    api = runners.cluster.http.api  # type: ignore[attr-defined]
    classes = default_classes("gpu:1", "nvidia.com/gpu", 2, cpu_image="cpu:1", build_namespace="orbit-builds")
    runners = Runners(runners.cluster, classes, namespaced={"orbit-builds": KubeCluster("orbit-builds", api)})
    build = job(555, labels=("self-hosted", "orbit-build"))
    github = github_with(build)
    await handle(runners, github, "queued", build)
    assert list(state.of("pods", "orbit-builds")) == ["orbit-runner-555"]
    assert list(state.of("secrets", "orbit-builds")) == ["orbit-runner-555"]
    assert state.of("pods") == {}, "nothing of a build in the runners' namespace"
    assert state.of("pods", "orbit-builds")["orbit-runner-555"]["spec"]["containers"][0]["securityContext"][
        "privileged"
    ]
    manifest = state.of("pods", "orbit-builds")["orbit-runner-555"]
    uid, new = await runners.cluster_for(classes["orbit-build"]).create_pod(
        {**manifest, "metadata": {**manifest["metadata"]}}
    )
    assert (uid, new) == (manifest["metadata"]["uid"], False), "a second create finds the pod where it is"

    github.jobs[555] = build
    await github.create_check_run(REPO, SHA, "orbit/train", "Deploy queued", "")
    state.add_event(
        "orbit-runner-555", "0/4 nodes are available: 4 node(s) didn't match orbit.dev/build", "orbit-builds"
    )
    later = datetime.now(UTC) + timedelta(minutes=15)
    outcome = await reconciler(runners, github, now=later).run_once()
    assert outcome.reported_pending == ["orbit-runner-555"]
    assert "orbit.dev/build" in github.named("update_check")[-1][2].summary, "its events, read where it is"

    github.jobs[555] = job(555, status="completed", labels=("self-hosted", "orbit-build"))
    outcome = await reconciler(runners, github).run_once()
    assert outcome.deleted == ["orbit-runner-555"]
    assert state.of("pods", "orbit-builds") == {} and state.of("secrets", "orbit-builds") == {}


async def test_a_github_error_is_counted_as_failed_and_the_rest_is_reconciled(
    kube: tuple[KubeState, Runners],
) -> None:
    state, runners = kube
    github = github_with(job(555), job(556))
    await handle(runners, github, "queued", job(555))
    await handle(runners, github, "queued", job(556))
    github.jobs[556] = job(556, status="completed")
    github.failures = flaky(1)  # the first call of the pass: pod 555's job
    outcome = await reconciler(runners, github).run_once()
    assert outcome.failed == ["orbit-runner-555"]
    assert outcome.deleted == ["orbit-runner-556"], "one pod's error stops nothing else"
    assert list(state.of("pods")) == ["orbit-runner-555"]


class JitRefusedFor(FakeGitHub):
    """GitHub refusing one job's runner registration (its name taken by a runner that never ran)."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused

    async def generate_jit_config(
        self, repo: Repo, name: str, labels: list[str], runner_group_id: int | None
    ) -> tuple[int, str]:
        if name == self.refused:
            raise Conflict("GitHub answered 409: a runner with the name already exists")
        return await super().generate_jit_config(repo, name, labels, runner_group_id)


async def test_one_job_that_cannot_start_stops_no_other_in_a_reconcile_pass(
    kube: tuple[KubeState, Runners],
) -> None:
    state, runners = kube
    github = JitRefusedFor("orbit-runner-611")
    queued = [job(610 + i, created=f"2026-11-27T10:00:0{9 - i}Z") for i in range(2)]  # 611 is the oldest
    github.jobs = {info.id: info for info in queued}
    github.runs = github_with().runs
    outcome = await reconciler(runners, github).run_once()
    assert set(outcome.failed) == {"octo-org/model job 611"}
    assert outcome.started == [610], "the job after the refused one still gets its pod"
    assert sorted(state.of("pods")) == ["orbit-runner-610"]
