"""Runner classes: which workflow labels get which kind of pod."""

from dataclasses import dataclass, field


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
    runner_group_id: int = 1


def default_classes(image: str, gpu_resource: str, max_gpu_runners: int) -> dict[str, RunnerClass]:
    """Return the two classes orbit uses: GPU training and CPU builds."""
    gpu_toleration = {"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}
    return {
        "orbit-gpu": RunnerClass(
            "orbit-gpu",
            image,
            cpu="4",
            memory="16Gi",
            gpus=1,
            gpu_resource=gpu_resource,
            tolerations=(gpu_toleration,),
            max_pods=max_gpu_runners,
        ),
        "orbit-cpu": RunnerClass(
            "orbit-cpu", image, cpu="2", memory="4Gi", deadline_seconds=3600, shm_size="256Mi"
        ),
    }


def class_for(labels: list[str], classes: dict[str, RunnerClass]) -> RunnerClass | None:
    """Return the class of a job whose labels are `self-hosted` plus one orbit class, else None."""
    chosen = [classes[label] for label in labels if label in classes]
    others = set(labels) - set(classes) - {"self-hosted", "linux", "x64"}
    return chosen[0] if len(chosen) == 1 and "self-hosted" in labels and not others else None
