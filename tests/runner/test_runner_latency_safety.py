"""What the fast path to a runner pod keeps: the cap under concurrent deliveries, stale events, cleanups.

Pods are counted by `ClassPods` (a listing reused briefly, plus what this process created since)
instead of a listing per delivery, and the pod is created while its runner is registered. These
tests hold the safety properties that a listing per delivery and one call after another gave.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from bot.errors import PermanentError, TemporaryError
from bot.events import Repo
from bot.runs import TRAIN, RecordedRun, TrainingRun
from runner.classes import default_classes
from runner.jobs import Runners
from runner.kube import ClassPods, KubeCluster, Place
from tests.fakes import DEFAULT_HEAD, FakeGitHub
from tests.kube_double import KubeState, serve_kube
from tests.runner.test_runners import SHA, github_with, handle, job

CAP = 4
IMAGE = "ghcr.io/octo-org/runner:1"
REPO = Repo("octo-org", "model")
RUN = RecordedRun(77, REPO.full_name, TRAIN, "train.yml", "test:77", TrainingRun(7, SHA).title, DEFAULT_HEAD)


@pytest.fixture
def kube() -> Iterator[tuple[KubeState, KubeCluster]]:
    state = KubeState()
    with serve_kube(state) as url:
        yield state, KubeCluster("orbit-runners", client.ApiClient(client.Configuration(host=url)))


def runners_on(cluster: KubeCluster, cap: int = CAP) -> Runners:
    return Runners(cluster, default_classes(IMAGE, "nvidia.com/gpu", cap))


def pods_created(state: KubeState) -> list[str]:
    return [what for _, verb, what in state.requests if verb == "CREATE" and what.startswith("pods/")]


async def test_concurrent_deliveries_never_pass_the_gpu_cap(kube: tuple[KubeState, KubeCluster]) -> None:
    state, cluster = kube
    runners = runners_on(cluster)
    jobs = [job(700 + i) for i in range(12)]
    github = github_with(*jobs)
    # 12 deliveries handled at once, as 8 workers (and more) would: each lists, decides, creates.
    await asyncio.gather(*(handle(runners, github, "queued", info) for info in jobs))
    assert len(state.of("pods")) == CAP
    assert len(pods_created(state)) == CAP, "no pod was even asked for past the cap"
    assert len(github.named("jit")) == CAP, "no runner registered for a job that got no pod"


async def test_the_cap_holds_across_bursts_on_a_listing_reused_meanwhile(
    kube: tuple[KubeState, KubeCluster],
) -> None:
    state, cluster = kube
    runners = runners_on(cluster)
    first, second = [job(710 + i) for i in range(3)], [job(720 + i) for i in range(3)]
    github = github_with(*first, *second)
    await asyncio.gather(*(handle(runners, github, "queued", info) for info in first))
    await asyncio.gather(*(handle(runners, github, "queued", info) for info in second))
    assert len(state.of("pods")) == CAP, "the pods created since the listing count too"


async def test_a_place_freed_by_someone_else_is_found_before_a_job_is_refused(
    kube: tuple[KubeState, KubeCluster],
) -> None:
    state, cluster = kube
    runners = runners_on(cluster, cap=1)
    github = github_with(job(730), job(731))
    await handle(runners, github, "queued", job(730))
    state.objects.pop(("pods", "orbit-runners", "orbit-runner-730"))  # deleted by hand, not by orbit
    await handle(runners, github, "queued", job(731))
    assert sorted(state.of("pods")) == ["orbit-runner-731"], "a refusal rests on a fresh listing"


async def test_a_pod_deleted_by_orbit_frees_its_place(kube: tuple[KubeState, KubeCluster]) -> None:
    state, cluster = kube
    runners = runners_on(cluster, cap=1)
    github = github_with(job(740), job(741))
    await handle(runners, github, "queued", job(740))
    await handle(runners, github, "completed", job(740, status="completed"))
    await handle(runners, github, "queued", job(741))
    assert sorted(state.of("pods")) == ["orbit-runner-741"]


async def test_a_stale_queued_event_for_a_running_job_starts_nothing(
    kube: tuple[KubeState, KubeCluster],
) -> None:
    state, cluster = kube
    runners = runners_on(cluster)
    github = github_with(job(750))
    await handle(runners, github, "queued", job(750))
    github.jobs[750] = job(750, status="in_progress")
    state.objects.pop(("pods", "orbit-runners", "orbit-runner-750"))  # even were its pod gone
    creates = len(pods_created(state))
    await handle(runners, github, "queued", job(750))  # redelivered after the job started
    assert pods_created(state)[creates:] == [], "not even a pod create request"
    assert len(github.named("jit")) == 1


async def test_a_redelivery_racing_the_first_creates_one_pod_and_one_runner(
    kube: tuple[KubeState, KubeCluster],
) -> None:
    state, cluster = kube
    runners = runners_on(cluster)
    github = github_with(job(760))
    await asyncio.gather(*(handle(runners, github, "queued", job(760)) for _ in range(4)))
    assert list(state.of("pods")) == ["orbit-runner-760"]
    assert len(github.named("jit")) == 1
    assert github.runners == {"orbit-runner-760": 9000}


async def test_a_pod_another_replica_created_keeps_its_runner_and_ours_is_removed(
    kube: tuple[KubeState, KubeCluster],
) -> None:
    state, cluster = kube
    other, ours = runners_on(cluster), runners_on(cluster)  # two processes, each with its own count
    github = github_with(job(770), job(771))
    await handle(ours, github, "queued", job(771))  # our count lists now: it does not see 770's pod
    await handle(other, github, "queued", job(770))
    assert await ours.start(github, REPO, job(770), RUN, 42) is False, "a listing after our start has it"
    assert len(github.named("jit")) == 2 and github.named("delete_runner") == [], "no registration of ours"
    assert sorted(state.of("pods")) == ["orbit-runner-770", "orbit-runner-771"]


class FailingJit(FakeGitHub):
    async def generate_jit_config(
        self, repo: Repo, name: str, labels: list[str], runner_group_id: int | None
    ) -> tuple[int, str]:
        await asyncio.sleep(0.05)  # the pod's create has answered by now
        raise TemporaryError("GitHub answered 502")


async def test_a_runner_that_cannot_be_registered_leaves_no_pod(kube: tuple[KubeState, KubeCluster]) -> None:
    state, cluster = kube
    runners = runners_on(cluster)
    github = FailingJit()
    github.jobs = {780: job(780)}
    with pytest.raises(TemporaryError):
        await handle(runners, github, "queued", job(780))
    assert pods_created(state) == ["pods/orbit-runner-780"], "created while the runner was registered"
    assert state.of("pods") == {} and state.of("secrets") == {}, "and deleted: no runner would use it"
    good = github_with(job(780))
    await handle(runners, good, "queued", job(780))  # the inbox's retry: its place was given back
    assert list(state.of("pods")) == ["orbit-runner-780"]


class SecretRefused(KubeCluster):
    async def create_secret(self, manifest: dict[str, Any]) -> None:
        raise PermanentError("Kubernetes answered 403 to create secret")


async def test_a_secret_that_cannot_be_created_leaves_no_pod_and_no_runner(
    kube: tuple[KubeState, KubeCluster],
) -> None:
    state, cluster = kube
    runners = runners_on(SecretRefused("orbit-runners", cluster.http.api))
    github = github_with(job(790))
    with pytest.raises(PermanentError):
        await handle(runners, github, "queued", job(790))
    assert state.of("pods") == {}
    assert github.runners == {}, "its registration removed"


async def test_one_listing_serves_the_deliveries_begun_before_it_and_a_later_one_lists_again() -> None:
    now = [0.0]
    listed: list[str] = []

    class Counting:
        async def class_pods(self, label: str) -> list[dict[str, str]]:
            listed.append(label)
            return []

    pods = ClassPods(clock=lambda: now[0])
    cluster: Any = Counting()

    def never_full(_: list[dict[str, str]]) -> bool:
        return False

    places = await asyncio.gather(
        *(pods.reserve(cluster, "orbit-gpu", i, {}, never_full, since=0.0) for i in range(10))
    )
    assert places == [Place.RESERVED] * 10 and listed == ["orbit-gpu"]
    now[0] = 0.5  # a delivery begun after that listing: other processes may have created pods since
    await pods.warm(cluster, "orbit-gpu", since=0.5)
    assert len(listed) == 2
    await pods.reserve(cluster, "orbit-gpu", 11, {}, never_full, since=0.5)
    assert len(listed) == 2, "its own listing serves its reservation"


async def test_a_pod_created_while_a_listing_was_on_its_way_still_counts() -> None:
    now = [0.0]
    answer = asyncio.Event()

    class Slow:
        async def class_pods(self, label: str) -> list[dict[str, str]]:
            await asyncio.wait_for(answer.wait(), 5)  # asked before job 1's pod was created, answered after
            return []

    pods = ClassPods(clock=lambda: now[0])
    cluster: Any = Slow()

    def at_cap_of_one(listed: list[dict[str, str]]) -> bool:
        return len(listed) >= 1

    answer.set()
    assert await pods.reserve(cluster, "orbit-gpu", 1, {}, at_cap_of_one, since=0.0) is Place.RESERVED
    answer.clear()
    now[0] = 3.0
    listing = asyncio.create_task(pods.warm(cluster, "orbit-gpu", since=3.0))  # asked at 3.0
    await asyncio.sleep(0.05)
    now[0] = 3.5
    pods.created("orbit-gpu", 1)  # answered at 3.5
    answer.set()
    await listing
    assert await pods.reserve(cluster, "orbit-gpu", 2, {}, at_cap_of_one, since=3.0) is Place.FULL
