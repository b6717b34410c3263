"""Prometheus metrics of the training flow: runner pods, how long jobs wait for one, reports published.

Label values come only from fixed sets: a runner class is one the bot was configured with (any other
pod counts as "other"), a phase one Kubernetes defines. The bot's `/metrics` serves them with the
core's (`bot.metrics`), from the same default registry.
"""

from collections import Counter as Tally
from collections.abc import Collection
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

from bot.events import WorkflowJob
from bot.metrics import OTHER, seconds_between
from runner.kube import CLASS_LABEL, RunnerPod

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
PUBLISHED, FAILED = "published", "failed"

RUNNER_PODS = Gauge("orbit_runner_pods", "Runner pods by class and phase", ["class", "phase"])
RUNNER_QUEUE = Histogram(
    "orbit_runner_queue_seconds",
    "Time from a job's being queued to its runner picking it up, by runner class",
    ["class"],
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
REPORTS_PUBLISHED = Counter(
    "orbit_reports_published_total", "Training reports published, or attempts that failed", ["outcome"]
)
for _outcome in (PUBLISHED, FAILED):  # both series exist from the start, at 0
    REPORTS_PUBLISHED.labels(_outcome)


def publish_pods(pods: list[RunnerPod], classes: Collection[str]) -> dict[tuple[str, str], int]:
    """Set the pod gauge from one listing: every class and phase, 0 where no pod is; return the counts."""
    counted = Tally(
        (_class_of(pod, classes), pod.phase if pod.phase in PHASES else "Unknown") for pod in pods
    )
    for klass in (*sorted(classes), OTHER):
        for phase in PHASES:
            RUNNER_PODS.labels(klass, phase).set(counted[klass, phase])
    return dict(counted)


def _class_of(pod: RunnerPod, classes: Collection[str]) -> str:
    klass = pod.labels.get(CLASS_LABEL, "")
    return klass if klass in classes else OTHER


def observe_queue(klass: str, job: WorkflowJob, now: datetime | None = None) -> float | None:
    """Observe how long a job waited for its runner; return the seconds (None when unknown).

    GitHub's times are used: `created_at` (queued) to `started_at` (picked up); the bot's clock
    stands in for `started_at` only when the event lacks it.
    """
    started = job.started_at or (now or datetime.now(UTC)).isoformat()
    seconds = seconds_between(job.created_at, started)
    if seconds is not None:
        RUNNER_QUEUE.labels(klass).observe(seconds)
    return seconds
