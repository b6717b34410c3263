"""Runner classes per workflow: a repository sizes its pods in `.github/orbit.yml`, within the installation's
limits, and names GPU types the admin defined; it never writes a nodeSelector or a toleration itself."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes_validate import validate
from pydantic import ValidationError

from bot.errors import TemporaryError
from bot.events import Repo
from bot.repo_config import RunnerSpec
from bot.settings import Settings
from runner.classes import GpuType, RepoLimits, default_classes, repo_limits, tailor
from runner.jobs import RepoConfigs, Runners
from runner.kube import KubeCluster
from tests.fakes import DEFAULT_HEAD, FakeGitHub
from tests.kube_double import KubeState, serve_kube
from tests.runner.test_runners import REPO, SHA, github_with, handle, job, reconciler

CLASSES = default_classes("ghcr.io/octo-org/runner:1", "nvidia.com/gpu", 2, cpu_image="cpu:1")
GPU, CPU = CLASSES["orbit-gpu"], CLASSES["orbit-cpu"]
A100 = GpuType(
    {"gpu.example.com/model": "a100"}, ({"key": "a100", "operator": "Exists", "effect": "NoSchedule"},)
)
LIMITS = RepoLimits(cpu="8", memory="32Gi", gpus=2, timeout_minutes=240, gpu_types={"a100": A100})
GPU_RESOURCE_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def config(**spec: Any) -> str:
    """Return a `.github/orbit.yml` that sizes train.yml's GPU runner."""
    fields = "".join(f"      {key}: {value!r}\n" for key, value in spec.items())
    return f"runners:\n  train.yml:\n    orbit-gpu:\n{fields}"


# --- tailoring a class: pure ---------------------------------------------------------------------


def test_a_request_within_the_limits_is_applied_as_asked() -> None:
    spec = RunnerSpec(cpu="6", memory="24Gi", gpus=2, gpu_type="a100", timeout_minutes=90)
    tailored = tailor(GPU, spec, LIMITS)
    assert tailored.notes == ()
    klass = tailored.klass
    assert (klass.cpu, klass.memory, klass.gpus, klass.deadline_seconds) == ("6", "24Gi", 2, 90 * 60)
    assert klass.node_selector == {"gpu.example.com/model": "a100"}
    assert klass.tolerations == (GPU_RESOURCE_TOLERATION, *A100.tolerations)


def test_a_request_above_a_limit_is_clamped_and_said() -> None:
    spec = RunnerSpec(cpu="64", memory="1Ti", gpus=8, timeout_minutes=6000)
    tailored = tailor(GPU, spec, LIMITS)
    klass = tailored.klass
    assert (klass.cpu, klass.memory, klass.gpus, klass.deadline_seconds) == ("8", "32Gi", 2, 240 * 60)
    assert tailored.notes == (
        "cpu 64 is above this installation's limit: 8 is used",
        "memory 1Ti is above this installation's limit: 32Gi is used",
        "timeout_minutes 6000 is above this installation's limit: 240 is used",
        "gpus 8 is above this installation's limit: 2 is used",
    )


def test_gpus_are_never_more_than_the_class_may_hold_at_once() -> None:
    one_at_a_time = default_classes("img", "nvidia.com/gpu", 1)["orbit-gpu"]
    tailored = tailor(one_at_a_time, RunnerSpec(gpus=2), LIMITS)
    assert tailored.klass.gpus == 1, "a pod asking for more GPUs than the cap would never start"


@pytest.mark.parametrize(
    ("spec", "note"),
    [
        (
            RunnerSpec.model_construct(cpu="lots"),  # the schema refuses it already; tailor too
            "cpu 'lots' is not a Kubernetes quantity: the default 4 is used",
        ),
        (RunnerSpec(memory="0"), "memory '0' is not above zero: the default 16Gi is used"),
        (
            RunnerSpec(gpu_type="h100"),
            "gpu_type 'h100' is not one this installation defines (a100): the default GPU nodes are used",
        ),
    ],
)
def test_a_value_orbit_cannot_use_keeps_the_default_and_is_said(spec: RunnerSpec, note: str) -> None:
    tailored = tailor(GPU, spec, LIMITS)
    assert tailored.klass == GPU
    assert tailored.notes == (note,)


def test_a_cpu_class_gets_no_gpu_and_no_gpu_node() -> None:
    tailored = tailor(CPU, RunnerSpec(gpus=1, gpu_type="a100", cpu="3"), LIMITS)
    assert (tailored.klass.gpus, tailored.klass.node_selector, tailored.klass.tolerations) == (0, {}, ())
    assert tailored.klass.cpu == "3"
    assert tailored.notes == ("orbit-cpu runs on no GPU: `gpus` and `gpu_type` are ignored",)


def test_no_spec_is_the_class_itself() -> None:
    assert tailor(GPU, None, LIMITS).klass is GPU


# --- the installation's settings -----------------------------------------------------------------

REQUIRED = {"ORBIT_GITHUB_APP_ID": "1", "ORBIT_WEBHOOK_SECRET": "s", "ORBIT_GITHUB_PRIVATE_KEY": "k"}


def settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> Settings:
    for key, value in {**REQUIRED, **values}.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_gpu_types_and_limits_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    found = settings(
        monkeypatch,
        ORBIT_GPU_TYPES='{"a100": {"nodeSelector": {"gpu.example.com/model": "a100"},'
        ' "tolerations": [{"key": "a100", "operator": "Exists", "effect": "NoSchedule"}]}, "l4": {}}',
        ORBIT_MAX_RUNNER_CPU="8",
        ORBIT_MAX_RUNNER_MEMORY="32Gi",
        ORBIT_MAX_RUNNER_GPUS="2",
        ORBIT_MAX_RUNNER_TIMEOUT_MINUTES="240",
    )
    assert repo_limits(found) == RepoLimits(
        cpu="8", memory="32Gi", gpus=2, timeout_minutes=240, gpu_types={"a100": A100, "l4": GpuType()}
    )


def test_the_defaults_let_a_repository_ask_for_one_gpu_and_no_type(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = repo_limits(settings(monkeypatch))
    assert (limits.cpu, limits.memory, limits.gpus, limits.timeout_minutes) == ("8", "32Gi", 1, 360)
    assert limits.gpu_types == {}


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("ORBIT_MAX_RUNNER_CPU", "many", "Kubernetes quantity"),
        ("ORBIT_MAX_RUNNER_MEMORY", "0", "Kubernetes quantity"),
        ("ORBIT_GPU_TYPES", '{"A100!": {}}', "GPU type names"),
        ("ORBIT_GPU_TYPES", '{"a100": {"node_selector": {}, "runtimeClass": "x"}}', "Extra inputs"),
        ("ORBIT_DVC_CACHE_CLAIM", "orbit-dvc-cache", "ORBIT_RUNNER_GROUP_ID"),
        ("ORBIT_DVC_CACHE_CLAIM", "Not_A_Name", "pattern"),
    ],
)
def test_a_bad_setting_stops_start_up_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str
) -> None:
    with pytest.raises(ValidationError, match=said):
        settings(monkeypatch, **{name: value})


def test_the_shared_cache_is_accepted_in_a_runner_group(monkeypatch: pytest.MonkeyPatch) -> None:
    found = settings(monkeypatch, ORBIT_DVC_CACHE_CLAIM="orbit-dvc-cache", ORBIT_RUNNER_GROUP_ID="3")
    assert found.dvc_cache_claim == "orbit-dvc-cache"


# --- through the webhook and the reconciler, against the Kubernetes double -----------------------


@pytest.fixture
def kube() -> Iterator[tuple[KubeState, Runners]]:
    state = KubeState()
    with serve_kube(state) as url:
        cluster = KubeCluster("orbit-runners", client.ApiClient(client.Configuration(host=url)))
        yield state, Runners(cluster, CLASSES, limits=LIMITS)


def configured(text: str, *jobs: int) -> FakeGitHub:
    github = github_with(*(job(i) for i in jobs))
    github.texts[(".github/orbit.yml", DEFAULT_HEAD)] = text  # the commit the dispatched run runs
    return github


async def test_the_repositorys_sizes_and_gpu_type_reach_the_pod(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = configured(config(cpu="6", memory="24Gi", gpus=2, gpu_type="a100", timeout_minutes=90), 555)
    await handle(runners, github, "queued", job(555))
    pod = state.of("pods")["orbit-runner-555"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "6", "memory": "24Gi"},
        "limits": {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": "2"},
    }
    assert spec["activeDeadlineSeconds"] == 90 * 60
    assert spec["nodeSelector"] == {"gpu.example.com/model": "a100"}
    assert spec["tolerations"] == [GPU_RESOURCE_TOLERATION, *A100.tolerations]
    assert pod["metadata"]["labels"]["orbit.dev/gpus"] == "2"
    assert github.named("file") == [("octo-org/model", ".github/orbit.yml", DEFAULT_HEAD)], (
        "read at the default branch's commit the run runs, never the PR's"
    )
    assert github.named("update_check") == [], "nothing to say"
    validate(pod, "1.30.0", strict=True)


async def test_another_workflows_or_classs_sizes_do_not_apply(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    text = (
        "runners:\n  deploy.yml:\n    orbit-gpu:\n      cpu: '7'\n"
        "  train.yml:\n    orbit-cpu:\n      cpu: '3'\n"
    )
    await handle(runners, configured(text, 555), "queued", job(555))
    (container,) = state.of("pods")["orbit-runner-555"]["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": GPU.cpu, "memory": GPU.memory}


async def test_a_clamped_request_runs_and_the_check_run_says_why(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = configured(config(gpus=4, gpu_type="<b>h100</b>"), 555)
    check = await github.create_check_run(REPO, SHA, "orbit/train", "Training queued", "")
    await handle(runners, github, "queued", job(555))
    spec = state.of("pods")["orbit-runner-555"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert spec["nodeSelector"] == {} and spec["tolerations"] == [GPU_RESOURCE_TOLERATION]
    ((_, check_id, update),) = github.named("update_check")
    assert check_id == check
    assert update.title == "Runner adjusted to this installation's limits"
    assert "gpus 4 is above this installation's limit: 2 is used" in update.summary
    assert "<b>" not in update.summary, "the repository's text is written inert"
    assert [(a.path, a.level) for a in update.annotations] == [(".github/orbit.yml", "warning")] * 2, (
        "warnings stay when the job's start replaces the summary"
    )


async def test_an_invalid_config_falls_back_to_the_defaults_and_says_so(
    kube: tuple[KubeState, Runners],
) -> None:
    state, runners = kube
    github = configured("runners:\n  train.yml:\n    orbit-gpu:\n      gpus: -1\n", 555)
    await github.create_check_run(REPO, SHA, "orbit/train", "Training queued", "")
    await handle(runners, github, "queued", job(555))
    (container,) = state.of("pods")["orbit-runner-555"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    ((_, _, update),) = github.named("update_check")
    assert "the installation's default runners are used" in update.summary


async def test_the_gpu_cap_counts_gpus_not_pods(kube: tuple[KubeState, Runners]) -> None:
    state, runners = kube
    github = configured(config(gpus=2), 601, 602)
    outcome = await reconciler(runners, github).run_once()
    assert outcome.started == [601], "two GPUs held of a cap of two: the second job waits"
    assert sorted(state.of("pods")) == ["orbit-runner-601"]
    assert len(github.named("file")) == 1, "the run's config is read once and kept"


async def test_a_config_is_read_again_once_its_time_is_up() -> None:
    now = [0.0]
    configs = RepoConfigs(ttl_s=300, clock=lambda: now[0])
    github = FakeGitHub()
    github.texts[(".github/orbit.yml", "d" * 40)] = config(cpu="6")
    repo = Repo("octo-org", "model")
    for moment in (0.0, 299.0, 301.0):
        now[0] = moment
        found, problem = await configs.read(github, repo, "d" * 40)
        assert found is not None and problem == ""
    assert len(github.named("file")) == 2


class SlowGitHub(FakeGitHub):
    """Answers file reads only once `answer` is set, failing them with `failure` when one is given."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()
        self.failure: Exception | None = None

    async def file_text(self, repo: Repo, path: str, ref: str) -> str | None:
        found = await super().file_text(repo, path, ref)
        await self.answer.wait()
        if self.failure is not None:
            raise self.failure
        return found


async def test_jobs_arriving_together_share_one_read_of_the_config() -> None:
    github, configs, repo = SlowGitHub(), RepoConfigs(), Repo("octo-org", "model")
    github.texts[(".github/orbit.yml", "d" * 40)] = config(cpu="6")
    readers = [asyncio.create_task(configs.read(github, repo, "d" * 40)) for _ in range(20)]
    await asyncio.sleep(0)
    github.answer.set()
    found = await asyncio.gather(*readers)
    assert len(github.named("file")) == 1, "twenty jobs of one run read its config once"
    assert {id(config) for config, _ in found} == {id(found[0][0])} and found[0][0] is not None
    assert configs.reading == {}, "a finished read is not kept as under way"


async def test_a_failed_shared_read_fails_every_waiter_and_is_tried_again() -> None:
    github, configs, repo = SlowGitHub(), RepoConfigs(), Repo("octo-org", "model")
    github.texts[(".github/orbit.yml", "d" * 40)] = config(cpu="6")
    github.failure = TemporaryError("GitHub answered 502 to get_content")
    readers = [asyncio.create_task(configs.read(github, repo, "d" * 40)) for _ in range(3)]
    await asyncio.sleep(0)
    github.answer.set()
    outcomes = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(outcome, TemporaryError) for outcome in outcomes), outcomes
    github.failure = None
    found, problem = await configs.read(github, repo, "d" * 40)
    assert found is not None and problem == "", "a failure is not kept: the next job reads again"
    assert len(github.named("file")) == 2


async def test_a_cancelled_reader_leaves_the_read_to_the_others() -> None:
    github, configs, repo = SlowGitHub(), RepoConfigs(), Repo("octo-org", "model")
    github.texts[(".github/orbit.yml", "d" * 40)] = config(cpu="6")
    first = asyncio.create_task(configs.read(github, repo, "d" * 40))
    second = asyncio.create_task(configs.read(github, repo, "d" * 40))
    await asyncio.sleep(0)
    first.cancel()  # its handler ran out of time
    github.answer.set()
    found, _ = await second
    assert first.cancelled() and found is not None
    assert len(github.named("file")) == 1
