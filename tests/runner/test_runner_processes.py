"""Runner pods when more than one process starts runners (attacks from a review of the fast path):
each process's pod count, and its concurrent pod create and runner registration.

`orbit serve --workers N` runs N processes, each with its own workers, its own reconciler pass and so
its own `ClassPods`; the `ha` overlay runs two replicas. Each test below names the scenario.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from bot.events import Repo
from bot.github.calls import Conflict
from runner.classes import default_classes
from runner.jobs import Runners
from runner.kube import ClassPods, KubeCluster, Place
from tests.fakes import FakeGitHub
from tests.kube_double import KubeState, serve_kube
from tests.runner.test_runner_latency_safety import RUN
from tests.runner.test_runners import job

IMAGE = "ghcr.io/octo-org/runner:1"
REPO = Repo("octo-org", "model")
GPU = "orbit-gpu"


class SharedPods:
    """One namespace's pods of a class, as every process's listing sees them."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, str]] = {}

    async def class_pods(self, label: str) -> list[dict[str, str]]:
        return [dict(labels) for labels in self.pods.values()]


def at_cap(cap: int) -> Any:
    def full(pods: list[dict[str, str]]) -> bool:
        return len(pods) >= cap

    return full


async def test_a_second_process_sees_pods_that_exist_before_its_delivery_started() -> None:
    """Finding 1: the 2 s listing reuse lets a second process pass the cap.

    Process A lists at t=0 (empty). Process B then fills the class (cap 2) at t=0.5: the API server
    holds 2 pods. A delivery reaches process A at t=1.0, after both pods exist; before d5207fa it
    listed afresh and was refused. Now A reuses its listing of t=0, sees 0 pods and creates a third.
    """
    now = [0.0]
    cluster: Any = SharedPods()
    a, b = ClassPods(clock=lambda: now[0]), ClassPods(clock=lambda: now[0])
    await a.warm(cluster, GPU, since=0.0)  # process A's last delivery, at t=0

    now[0] = 0.5
    for job_id in (1, 2):  # process B fills the class
        assert await b.reserve(cluster, GPU, job_id, {}, at_cap(2), since=now[0]) is Place.RESERVED
        cluster.pods[str(job_id)] = {"orbit.dev/job": str(job_id)}
        b.created(GPU, job_id)

    now[0] = 1.0  # a delivery reaches process A; the cluster already holds cap pods
    since = a.clock()
    await a.warm(cluster, GPU, since)  # as start_if_queued does
    place = await a.reserve(cluster, GPU, 3, {}, at_cap(2), since=since)
    assert place is Place.FULL, "2 GPU pods exist already: a third passes ORBIT_MAX_GPU_RUNNERS"


class ConflictingGitHub(FakeGitHub):
    """GitHub as it answers: a second JIT registration under a taken runner name is 409 Conflict.

    (tests/fakes.FakeGitHub overwrites the name instead; GitHub answers "409 Already exists - A runner
    with the name ... already exists".) All processes share one `registered`.
    """

    def __init__(self, registered: dict[str, int], jit_delay: float = 0.0, delete_delay: float = 0.0) -> None:
        super().__init__()
        self.registered = registered
        self.jit_delay, self.delete_delay = jit_delay, delete_delay

    async def generate_jit_config(
        self, repo: Repo, name: str, labels: list[str], runner_group_id: int | None
    ) -> tuple[int, str]:
        await asyncio.sleep(self.jit_delay)
        self._record("jit", repo.full_name, name)
        if name in self.registered:
            raise Conflict("GitHub answered 409 to generate_jitconfig")
        self.registered[name] = 9000 + len(self.calls)
        return self.registered[name], f"JIT-{name}"

    async def find_runner(self, repo: Repo, name: str, in_organization: bool = False) -> int | None:
        return self.registered.get(name)

    async def delete_runner(self, repo: Repo, runner_id: int, in_organization: bool = False) -> None:
        await asyncio.sleep(self.delete_delay)
        self._record("delete_runner", repo.full_name, runner_id)
        for name, rid in list(self.registered.items()):
            if rid == runner_id:
                del self.registered[name]


class SlowCreate(KubeCluster):
    def __init__(self, namespace: str, api: client.ApiClient, delay: float) -> None:
        super().__init__(namespace, api)
        self.delay = delay

    async def create_pod(self, manifest: dict[str, Any]) -> tuple[str, bool]:
        await asyncio.sleep(self.delay)
        return await super().create_pod(manifest)


@pytest.fixture
def kube() -> Iterator[tuple[KubeState, str]]:
    state = KubeState()
    with serve_kube(state) as url:
        yield state, url


async def test_two_processes_starting_one_job_leave_it_a_pod_and_a_runner(
    kube: tuple[KubeState, str],
) -> None:
    """Finding 2: pod create and registration at once let two processes each undo the other's half.

    Process 1 (say its reconciler pass) and process 2 (the `queued` delivery) start job 800 at once.
    P1's pod create wins (new), P2's registration wins. P2's pod create answers 409: P2 removes its
    registration (a GitHub call, 200 ms). Meanwhile P1's registration answers 409 (P2's is still
    there): P1 deletes its pod and raises. Nothing is left: no pod, no runner, until a later
    reconcile pass. One call after another (before d5207fa) the registration decided: exactly one.
    """
    state, url = kube
    api = client.ApiClient(client.Configuration(host=url))
    classes = default_classes(IMAGE, "nvidia.com/gpu", 4)
    registered: dict[str, int] = {}
    p1 = Runners(KubeCluster("orbit-runners", api), classes)
    p2 = Runners(SlowCreate("orbit-runners", api, delay=0.05), classes)
    gh1 = ConflictingGitHub(registered, jit_delay=0.1)
    gh2 = ConflictingGitHub(registered, delete_delay=0.2)
    for github in (gh1, gh2):
        github.jobs = {800: job(800)}

    outcomes = await asyncio.gather(
        p1.start(gh1, REPO, job(800), RUN, 42), p2.start(gh2, REPO, job(800), RUN, 42), return_exceptions=True
    )
    pods, secrets = list(state.of("pods")), list(state.of("secrets"))
    assert (pods, secrets, list(registered)) == (
        ["orbit-runner-800"],
        ["orbit-runner-800"],
        ["orbit-runner-800"],
    ), f"job 800 stranded: pods {pods}, secrets {secrets}, runners {registered}, outcomes {outcomes}"


async def test_a_listing_that_fails_reserves_nothing_and_the_next_one_counts() -> None:
    """Checked sound: a failing listing raises before a place is taken, and leaks nothing."""
    calls = [0]

    class Flaky:
        async def class_pods(self, label: str) -> list[dict[str, str]]:
            calls[0] += 1
            if calls[0] == 1:
                raise RuntimeError("API server unreachable")
            return [{"orbit.dev/job": "1"}]

    now = [0.0]
    pods = ClassPods(clock=lambda: now[0])
    cluster: Any = Flaky()
    with pytest.raises(RuntimeError):
        await pods.reserve(cluster, GPU, 2, {}, at_cap(1), since=0.0)
    now[0] = 1.0  # the inbox's retry, later
    assert await pods.reserve(cluster, GPU, 2, {}, at_cap(1), since=1.0) is Place.FULL


async def test_a_cancelled_start_gives_its_place_back() -> None:
    """Checked sound: a reservation is released when the create is cancelled (handler time limit)."""
    classes = default_classes(IMAGE, "nvidia.com/gpu", 1)
    started = asyncio.Event()

    class Hanging:
        async def class_pods(self, label: str) -> list[dict[str, str]]:
            return []

    runners = Runners(Hanging(), classes)  # type: ignore[arg-type]

    class SlowJit(FakeGitHub):
        async def generate_jit_config(self, *args: Any) -> tuple[int, str]:
            started.set()
            await asyncio.sleep(10)
            return 1, "x"

    github = SlowJit()
    github.jobs = {810: job(810)}

    async def create_pod(manifest: dict[str, Any]) -> tuple[str, bool]:
        return "uid", True

    runners.cluster.create_pod = create_pod  # type: ignore[method-assign]
    runners.cluster.delete_runner = lambda name: None  # type: ignore[method-assign]
    task = asyncio.create_task(runners.start(github, REPO, job(810), RUN, 42))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runners.pods._known(GPU).creating == {}


async def test_a_listing_that_times_out_fails_the_waiting_deliveries_together() -> None:
    """Finding 3 (operational): the class's lock is held across the listing, and a failed listing
    leaves nothing for the next waiter, so each waiting delivery lists again, one after another.

    With the API server not answering (KUBE_TIMEOUT read: 30 s), N deliveries of a class fail after
    N x 30 s instead of 30 s, each holding a worker slot meanwhile (until the handler's time limit).
    Here a listing fails after 0.2 s; five deliveries at once take 1 s, not 0.2 s.
    """
    import time as clock

    listings = [0]

    class Unanswering:
        async def class_pods(self, label: str) -> list[dict[str, str]]:
            listings[0] += 1
            await asyncio.sleep(0.2)
            raise TimeoutError("read timed out")

    pods = ClassPods()
    cluster: Any = Unanswering()
    started = clock.monotonic()
    results = await asyncio.gather(*(pods.warm(cluster, GPU, 0.0) for _ in range(5)), return_exceptions=True)
    took = clock.monotonic() - started
    assert all(isinstance(r, TimeoutError) for r in results)
    assert took < 0.5, f"5 deliveries waited {took:.1f} s on {listings[0]} listings, one after another"
