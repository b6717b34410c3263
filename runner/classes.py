"""Runner classes: which workflow labels get which kind of pod.

`orbit-gpu` trains, `orbit-cpu` pulls, builds Bentos and pushes images (no image build: a deploy
appends the Bento to a serving base as one layer). `orbit-build` is the fallback for a Bento whose
dependencies no serving base holds: `bentoml containerize` with buildah, which needs what a platform
team grants only in a namespace of its own. Its pods are the only privileged ones (rootless buildah in
a privileged container: the runner user still runs every step), in `build_namespace`, apart from the
other runners and their NetworkPolicy; deploy/k8s/components/build-runners makes that namespace.
"""

from dataclasses import dataclass, field

BUILD_NODE_LABEL = "orbit.dev/build"  # the label and the taint of the nodes build runners may use


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


@dataclass(frozen=True)
class GpuNodes:
    """Where GPU runner pods go: the nodes' labels and taints, and the RuntimeClass exposing the GPUs."""

    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    runtime_class: str = ""


def default_classes(
    image: str,
    gpu_resource: str,
    max_gpu_runners: int,
    cpu_image: str = "",
    build_namespace: str = "",
    build_image: str = "",
    gpu_nodes: GpuNodes | None = None,
) -> dict[str, RunnerClass]:
    """Return the classes orbit uses: GPU training, CPU work, and (given its namespace) full builds.

    `image` is the GPU runners' image; `cpu_image` the CPU runners' (no CUDA; `image` when empty);
    `build_image` the build runners' (with buildah; `cpu_image` when empty).
    """
    nodes = gpu_nodes or GpuNodes()
    gpu_toleration = {"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}
    tolerations = (gpu_toleration, *(t for t in nodes.tolerations if t != gpu_toleration))
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
        ),
        "orbit-cpu": RunnerClass(
            "orbit-cpu", cpu, cpu="2", memory="4Gi", deadline_seconds=3600, shm_size="256Mi"
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
