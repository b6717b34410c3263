"""Prometheus metrics of deploys, in the default registry the bot's `GET /metrics` serves.

A deploy, here, is the bot's part of shipping one build: from its build's completion (or a
`/rollback`) to the deployment's final status. A build that failed or an image refused counts as a
failed deploy; one superseded by a newer deployment, or a preview whose PR closed, counts not at all.
"""

from typing import Literal, get_args

from prometheus_client import Counter, Histogram

from bot.github.deployments import PRODUCTION

DeployOutcome = Literal["succeeded", "failed", "restored"]  # restored: failed, and the previous model serves
ENVIRONMENTS = ("production", "preview")

DEPLOYS = Counter(
    "orbit_deploys_total",
    "Deploys by environment (production, preview) and outcome (succeeded, failed, restored)",
    ["environment", "outcome"],
)
DEPLOY_DURATION = Histogram(
    "orbit_deploy_duration_seconds",
    "Time from a build's completion to its deployment's final status",
    ["environment", "outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200),
)


def environment_label(environment: str) -> str:
    """Return the label of an environment: production, or preview for every `pr-<N>`."""
    return "production" if environment == PRODUCTION else "preview"


def outcome_of(ok: bool, restored: bool | None) -> DeployOutcome:
    """Return a rollout's outcome label."""
    if ok:
        return "succeeded"
    return "restored" if restored else "failed"


def record_deploy(environment: str, outcome: DeployOutcome, seconds: float) -> None:
    """Count one deploy of an environment and observe how long it took."""
    labels = (environment_label(environment), outcome)
    DEPLOYS.labels(*labels).inc()
    DEPLOY_DURATION.labels(*labels).observe(seconds)


def _start_every_series() -> None:
    """Create each series at zero, so that a rate or an alert has data before the first deploy."""
    for environment in ENVIRONMENTS:
        for outcome in get_args(DeployOutcome):
            DEPLOYS.labels(environment, outcome)
            DEPLOY_DURATION.labels(environment, outcome)


_start_every_series()
