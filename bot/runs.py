"""The contract between the bot and the workflow runs it dispatches, written once for both sides.

The bot dispatches train.yml and deploy.yml with `inputs`; each workflow names its run from them
(`run-name:`) and names its jobs (`jobs.<id>.name`); the bot recognises its runs and their jobs by
those names. `tests/deploy/test_manifests.py` holds the workflows to the same formats.
"""

import re
from dataclasses import dataclass

TRAIN_WORKFLOW = "train.yml"
DEPLOY_WORKFLOW = "deploy.yml"
_TRAIN = re.compile(r"^orbit/train PR #(?P<pull>\d+) at (?P<sha>[0-9a-f]{7,40})\b")
_DEPLOY = re.compile(
    r"^orbit/deploy PR #(?P<pull>\d+) to (?P<environment>[\w-]+) "
    r"\(deployment (?P<deployment>\d+)\) at (?P<sha>[0-9a-f]{40})\b"
)
_ANY_RUN = re.compile(r"^orbit/\w+ PR #(?P<pull>\d+)\b")
_TRAIN_JOB = re.compile(r"\btrain PR #(?P<pull>\d+)\b")


@dataclass(frozen=True)
class TrainingRun:
    """A run of train.yml: train a pull request's commit and report against its base."""

    pull: int
    sha: str
    base: str = ""

    @property
    def title(self) -> str:
        """Return the run's name, as train.yml's `run-name` writes it."""
        return f"orbit/train PR #{self.pull} at {self.sha}"

    @property
    def inputs(self) -> dict[str, str]:
        """Return the dispatch inputs train.yml declares."""
        return {"pr": str(self.pull), "sha": self.sha, "base": self.base}


@dataclass(frozen=True)
class DeployRun:
    """A run of deploy.yml: build the image of a commit for a GitHub deployment."""

    pull: int
    environment: str
    deployment_id: int
    sha: str

    @property
    def title(self) -> str:
        """Return the run's name, as deploy.yml's `run-name` writes it."""
        return (
            f"orbit/deploy PR #{self.pull} to {self.environment} "
            f"(deployment {self.deployment_id}) at {self.sha}"
        )

    @property
    def inputs(self) -> dict[str, str]:
        """Return the dispatch inputs deploy.yml declares."""
        return {
            "sha": self.sha,
            "environment": self.environment,
            "deployment": str(self.deployment_id),
            "pr": str(self.pull),
        }


def training_run(title: str) -> TrainingRun | None:
    """Return the training run a run name describes, or None when it is not one."""
    match = _TRAIN.match(title)
    return TrainingRun(int(match["pull"]), match["sha"]) if match else None


def deploy_run(title: str) -> DeployRun | None:
    """Return the deploy run a run name describes, or None when it is not one."""
    match = _DEPLOY.match(title)
    if match is None:
        return None
    return DeployRun(int(match["pull"]), match["environment"], int(match["deployment"]), match["sha"])


def run_pull(title: str) -> int | None:
    """Return the pull request an orbit run's name is about."""
    match = _ANY_RUN.match(title)
    return int(match["pull"]) if match else None


def production_run(title: str) -> bool:
    """Return whether a run name is a deploy to production (rolled out one at a time)."""
    run = deploy_run(title)
    return run is not None and run.environment == "production"


def training_job_name(pull: int) -> str:
    """Return the name train.yml gives its job, which tells the runner pod its PR."""
    return f"train PR #{pull}"


def training_job_pull(job_name: str) -> int | None:
    """Return the pull request of a training job, from its name."""
    match = _TRAIN_JOB.search(job_name)
    return int(match["pull"]) if match else None
