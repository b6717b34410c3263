"""Runs as orbit records them when it dispatches: what makes a workflow_run or job event count."""

import functools
from typing import Any

from bot.context import Store
from bot.runs import DEPLOY, TRAIN, DeployRun, RecordedRun, TrainingRun, record
from tests.fakes import DEFAULT_HEAD

REPOSITORY = "octo-org/model"


def record_training(
    store: Store, run_id: int, pull: int = 7, sha: str = "a" * 40, repository: str = REPOSITORY
) -> RecordedRun:
    """Record a training run as dispatching it would."""
    run = RecordedRun(
        run_id, repository, TRAIN, "train.yml", f"test:{run_id}", TrainingRun(pull, sha).title, DEFAULT_HEAD
    )
    store.write(functools.partial(record, run=run))
    return run


def record_deploy(
    store: Store,
    run_id: int,
    pull: int,
    environment: str,
    deployment: int,
    sha: str,
    repository: str = REPOSITORY,
) -> RecordedRun:
    """Record a deploy run as dispatching it would."""
    title = DeployRun(pull, environment, deployment, sha).title
    run = RecordedRun(run_id, repository, DEPLOY, "deploy.yml", f"test:{run_id}", title, DEFAULT_HEAD)
    store.write(functools.partial(record, run=run))
    return run


def as_dispatched(run_id: int, workflow: str, repository: str = REPOSITORY) -> dict[str, Any]:
    """Return the fields a workflow_run payload carries for a run orbit dispatched."""
    return {
        "id": run_id,
        "path": f".github/workflows/{workflow}",
        "event": "workflow_dispatch",
        "head_sha": DEFAULT_HEAD,
        "head_repository": {"full_name": repository},
    }
