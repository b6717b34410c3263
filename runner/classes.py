"""Runner classes: which workflow labels get which kind of pod.

`orbit-gpu` trains, `orbit-cpu` builds Bentos and pushes images (no image build: a deploy appends the
Bento to a serving base as one layer), `orbit-data` pulls and pushes a training run's DVC data: the one
class that runs no pull request's code, so the only one that may write the repository's shared cache
(ORBIT_DVC_CACHE_CLAIM; `orbit-gpu` reads it, `orbit-cpu` never sees it: deploy.yml builds a PR's
Bento there). `orbit-build` is the fallback for a Bento whose
dependencies no serving base holds: `bentoml containerize` with buildah, which needs what a platform
team grants only in a namespace of its own. Its pods are the only privileged ones (rootless buildah in
a privileged container: the runner user still runs every step), in `build_namespace`, apart from the
other runners and their NetworkPolicy; deploy/k8s/components/build-runners makes that namespace.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from bot.repo_config import RunnerSpec
from bot.settings import Settings

BUILD_NODE_LABEL = "orbit.dev/build"  # the label and the taint of the nodes build runners may use
GPU_CLASS, CPU_CLASS, DATA_CLASS, BUILD_CLASS = "orbit-gpu", "orbit-cpu", "orbit-data", "orbit-build"


@dataclass(frozen=True)
class CacheMount:
    """The repository's folder of the shared cache volume (a ReadWriteMany PVC), as a class mounts it."""

    claim: str
    read_only: bool = True


@dataclass(frozen=True)
class RunnerClass:
    """One kind of runner pod, chosen by a workflow job's labels."""

    label: str
    image: str
    cpu: str = "2"
    memory: str = "8Gi"
    gpus: int = 0
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    deadline_seconds: int = 3 * 3600
    shm_size: str = "2Gi"
    max_pods: int = 4
    namespace: str = ""  # where its pods run; empty: the runners' namespace
    runtime_class: str = ""  # the RuntimeClass that exposes the GPUs, where the cluster needs one
    privileged: bool = False  # only the build class: buildah needs it
    cache: CacheMount | None = None  # the shared cache, for the classes that may see it


@dataclass(frozen=True)
class GpuNodes:
    """Where GPU runner pods go: the nodes' labels and taints, and the RuntimeClass exposing the GPUs."""

    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    runtime_class: str = ""


def gpu_tolerations(gpu_resource: str, others: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
    """Return the toleration of the GPU resource's taint first, then the nodes' own, without a repeat."""
    resource = {"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}
    return (resource, *(t for t in others if t != resource))


def default_classes(
    image: str,
    gpu_resource: str,
    max_gpu_runners: int,
    cpu_image: str = "",
    build_namespace: str = "",
    build_image: str = "",
    gpu_nodes: GpuNodes | None = None,
    cache_claim: str = "",
) -> dict[str, RunnerClass]:
    """Return the classes orbit uses: GPU training, CPU work, and (given its namespace) full builds.

    `image` is the GPU runners' image; `cpu_image` the CPU runners' (no CUDA; `image` when empty);
    `build_image` the build runners' (with buildah; `cpu_image` when empty). `cache_claim` names the
    shared cache's PVC: `orbit-data` mounts it read-write, `orbit-gpu` read-only, no other class at all.
    `max_gpu_runners` caps the GPUs the GPU class's pods hold at once (a pod with two counts twice).
    """
    nodes = gpu_nodes or GpuNodes()
    tolerations = gpu_tolerations(gpu_resource, nodes.tolerations)
    cpu = cpu_image or image
    classes = {
        "orbit-gpu": RunnerClass(
            "orbit-gpu",
            image,
            cpu="4",
            memory="16Gi",
            gpus=1,
            gpu_resource=gpu_resource,
            node_selector=dict(nodes.node_selector),
            tolerations=tolerations,
            runtime_class=nodes.runtime_class,
            max_pods=max_gpu_runners,
            cache=CacheMount(cache_claim, read_only=True) if cache_claim else None,
        ),
        "orbit-cpu": RunnerClass(
            "orbit-cpu", cpu, cpu="2", memory="4Gi", deadline_seconds=3600, shm_size="256Mi"
        ),
        "orbit-data": RunnerClass(
            "orbit-data",
            cpu,
            cpu="2",
            memory="4Gi",
            deadline_seconds=3600,
            shm_size="256Mi",
            cache=CacheMount(cache_claim, read_only=False) if cache_claim else None,
        ),
    }
    if build_namespace:
        classes["orbit-build"] = RunnerClass(
            "orbit-build",
            build_image or cpu,
            cpu="4",
            memory="8Gi",
            deadline_seconds=3600,
            shm_size="256Mi",
            max_pods=2,
            namespace=build_namespace,
            privileged=True,
            # only on nodes kept for it (labelled and tainted): never beside the bot or a served model
            node_selector={BUILD_NODE_LABEL: "true"},
            tolerations=({"key": BUILD_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"},),
        )
    return classes


def class_for(labels: list[str], classes: dict[str, RunnerClass]) -> RunnerClass | None:
    """Return the class of a job whose labels are `self-hosted` plus one orbit class, else None.

    GitHub matches labels whatever their case, so orbit does too: `Orbit-Build` asks for the same
    runner as `orbit-build`, and must be judged as such.
    """
    folded = {label.lower() for label in labels}
    chosen = [classes[label] for label in folded if label in classes]
    others = folded - set(classes) - {"self-hosted", "linux", "x64"}
    return chosen[0] if len(chosen) == 1 and "self-hosted" in folded and not others else None


# --- a repository's own runner sizes (`runners` of .github/orbit.yml), within the installation's limits


@dataclass(frozen=True)
class GpuType:
    """Nodes of one kind of GPU, as the installation's admin defines them (ORBIT_GPU_TYPES)."""

    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class RepoLimits:
    """The most a repository may ask of a runner class, and the GPU types it may name.

    A repository names a type; it never writes a nodeSelector or a toleration itself, so it can land
    its pods on no node the admin did not give a type to.
    """

    cpu: str = "8"
    memory: str = "32Gi"
    gpus: int = 1
    timeout_minutes: int = 360
    gpu_types: Mapping[str, GpuType] = field(default_factory=dict)


@dataclass(frozen=True)
class Tailored:
    """A class as a repository asked for it, and what of the request was clamped or ignored, and why."""

    klass: RunnerClass
    notes: tuple[str, ...] = ()


def tailor(klass: RunnerClass, spec: RunnerSpec | None, limits: RepoLimits) -> Tailored:
    """Return the class with the repository's sizes, each clamped to the installation's limit.

    A request above a limit is clamped (the job still runs) and noted; a value that is not a
    Kubernetes quantity, a GPU type the installation does not define, or GPUs asked of a CPU class
    keep the class's default and are noted. Notes quote the repository's values; render them inert.
    """
    if spec is None:
        return Tailored(klass)
    notes: list[str] = []
    changes: dict[str, Any] = {}
    for name, asked in (("cpu", spec.cpu), ("memory", spec.memory)):
        if asked is not None:
            changes[name] = _quantity(name, asked, getattr(klass, name), getattr(limits, name), notes)
    if spec.timeout_minutes is not None:
        minutes = _clamped("timeout_minutes", spec.timeout_minutes, limits.timeout_minutes, notes)
        changes["deadline_seconds"] = minutes * 60
    if klass.gpus or not (spec.gpus or spec.gpu_type):
        changes.update(_gpus(klass, spec, limits, notes))
    else:
        notes.append(f"{klass.label} runs on no GPU: `gpus` and `gpu_type` are ignored")
    return Tailored(replace(klass, **changes), tuple(notes))


def _quantity(name: str, asked: str, default: str, limit: str, notes: list[str]) -> str:
    try:
        value = parse_quantity(asked)
    except ValueError:
        notes.append(f"{name} {asked!r} is not a Kubernetes quantity: the default {default} is used")
        return default
    if value <= 0:
        notes.append(f"{name} {asked!r} is not above zero: the default {default} is used")
        return default
    if value > parse_quantity(limit):
        notes.append(f"{name} {asked} is above this installation's limit: {limit} is used")
        return limit
    return asked


def _clamped(name: str, asked: int, limit: int, notes: list[str]) -> int:
    if asked > limit:
        notes.append(f"{name} {asked} is above this installation's limit: {limit} is used")
        return limit
    return asked


def _gpus(klass: RunnerClass, spec: RunnerSpec, limits: RepoLimits, notes: list[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if spec.gpus is not None:
        # never more than the class's cap: a pod asking for more GPUs than may run at once never starts
        changes["gpus"] = _clamped("gpus", spec.gpus, min(limits.gpus, klass.max_pods), notes)
    if spec.gpu_type is not None:
        gpu_type = limits.gpu_types.get(spec.gpu_type)
        if gpu_type is None:
            known = ", ".join(sorted(limits.gpu_types)) or "none"
            notes.append(
                f"gpu_type {spec.gpu_type!r} is not one this installation defines ({known}):"
                " the default GPU nodes are used"
            )
        else:
            changes["node_selector"] = dict(gpu_type.node_selector)
            changes["tolerations"] = gpu_tolerations(klass.gpu_resource, gpu_type.tolerations)
    return changes


def repo_limits(settings: Settings) -> RepoLimits:
    """Return the installation's limits on what a repository may ask, from its settings."""
    return RepoLimits(
        cpu=settings.max_runner_cpu,
        memory=settings.max_runner_memory,
        gpus=settings.max_runner_gpus,
        timeout_minutes=settings.max_runner_timeout_minutes,
        gpu_types={
            name: GpuType(dict(kind.node_selector), tuple(dict(t) for t in kind.tolerations))
            for name, kind in settings.gpu_types.items()
        },
    )
