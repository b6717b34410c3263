"""The contract between the bot and the workflow runs it dispatches, written once for both sides.

The bot dispatches train.yml and deploy.yml with `inputs`; each workflow names its run from them
(`run-name:`). A name proves nothing (anyone who can run a workflow chooses it): orbit records the
id GitHub answers to each dispatch, with the default branch commit it runs, and accepts a run, its
jobs and its artifacts only when the record and the run agree field by field (`rejection`). Each
effect of a run (a report published, an image rolled out) is recorded once done (`mark_done`).
"""

import logging
import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.engine import Connection

from bot.inbox import metadata

TRAIN_WORKFLOW = "train.yml"
DEPLOY_WORKFLOW = "deploy.yml"
_TRAIN = re.compile(
    r"^orbit/train PR #(?P<pull>\d+) at (?P<sha>[0-9a-f]{7,40})"
    r"(?: experiment (?P<experiment>[A-Za-z0-9_-]{1,64}) \((?P<params>[^()\n]{1,300})\)$|\b)"
)
_DEPLOY = re.compile(
    r"^orbit/deploy PR #(?P<pull>\d+) to (?P<environment>[\w-]+) "
    r"\(deployment (?P<deployment>\d+)\) at (?P<sha>[0-9a-f]{40})\b"
)
_ANY_RUN = re.compile(r"^orbit/\w+ PR #(?P<pull>\d+)\b")
_TRAIN_JOB = re.compile(r"\btrain PR #(?P<pull>\d+)\b")
log = logging.getLogger(__name__)
_refused: set[tuple[int, str]] = set()


@dataclass(frozen=True)
class TrainingRun:
    """A run of train.yml: train a pull request's commit and report against its base.

    A sweep point also names its DVC experiment and the `key=value` settings it runs with
    (`dvc exp run --name <experiment> -S key=value ...`); the PR's own training names neither.
    """

    pull: int
    sha: str
    base: str = ""
    experiment: str = ""
    params: tuple[str, ...] = ()

    @property
    def sweep(self) -> bool:
        """Return whether this run is a point of a parameter sweep (not the PR's own training)."""
        return bool(self.experiment)

    @property
    def title(self) -> str:
        """Return the run's name, as train.yml's `run-name` writes it."""
        title = f"orbit/train PR #{self.pull} at {self.sha}"
        return f"{title} experiment {self.experiment} ({self.settings})" if self.sweep else title

    @property
    def settings(self) -> str:
        """Return the point's settings as the `set` input carries them: `key=value` words."""
        return " ".join(self.params)

    @property
    def inputs(self) -> dict[str, str]:
        """Return the dispatch inputs train.yml declares (a sweep point's two only for a point)."""
        inputs = {"pr": str(self.pull), "sha": self.sha, "base": self.base}
        if self.sweep:
            inputs.update(experiment=self.experiment, set=self.settings)
        return inputs


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
    if match is None:
        return None
    params = tuple(match["params"].split()) if match["experiment"] else ()
    return TrainingRun(int(match["pull"]), match["sha"], experiment=match["experiment"] or "", params=params)


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


# How a run is recognised: by its id, recorded when orbit dispatched it, never by its name.

UNTRUSTED_RUNS = Counter(
    "orbit_untrusted_runs_total",
    "Workflow runs, and their jobs, that claimed to be orbit's but were not, by reason",
    ["reason"],
)
orbit_runs = sa.Table(
    "orbit_runs",
    metadata,
    sa.Column("run_id", sa.BigInteger, primary_key=True),
    sa.Column("repository", sa.String(300), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),  # TRAIN or DEPLOY
    sa.Column("workflow", sa.String(200), nullable=False),  # its file: train.yml, deploy.yml
    sa.Column("trigger", sa.String(200), nullable=False),  # what asked for it: one run per trigger
    sa.Column("title", sa.String(400), nullable=False),  # the run name: TrainingRun or DeployRun
    sa.Column("head_sha", sa.String(40), nullable=False),  # the default branch commit it runs
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_orbit_runs_trigger", "repository", "trigger"),
)
run_effects = sa.Table(
    "run_effects",
    metadata,
    sa.Column("run_id", sa.BigInteger, primary_key=True),
    sa.Column("effect", sa.String(32), primary_key=True),
    sa.Column("done_at", sa.Float, nullable=False),
)
TRAIN, DEPLOY = "train", "deploy"


@dataclass(frozen=True)
class RecordedRun:
    """A run orbit dispatched, as it recorded it: the only runs whose events and artifacts count."""

    run_id: int
    repository: str
    purpose: str
    workflow: str
    trigger: str
    title: str
    head_sha: str

    @property
    def training(self) -> TrainingRun | None:
        """Return what a training run trains (None for a deploy run)."""
        return training_run(self.title) if self.purpose == TRAIN else None

    @property
    def deploy(self) -> DeployRun | None:
        """Return what a deploy run builds (None for a training run)."""
        return deploy_run(self.title) if self.purpose == DEPLOY else None

    @property
    def pull(self) -> int | None:
        """Return the pull request the run is about."""
        return run_pull(self.title)


@dataclass(frozen=True)
class ObservedRun:
    """What an event or the API says about a run: to be checked against the record, field by field."""

    run_id: int
    repository: str
    path: str
    event: str
    head_repository: str
    head_sha: str


def record(connection: Connection, *, run: RecordedRun) -> None:
    """Record a dispatched run (a second record of the same id changes nothing)."""
    exists = connection.execute(
        sa.select(orbit_runs.c.run_id).where(orbit_runs.c.run_id == run.run_id)
    ).first()
    if exists is None:
        connection.execute(orbit_runs.insert().values(**vars(run), created_at=time.time()))


def recorded(connection: Connection, *, run_id: int) -> RecordedRun | None:
    """Return the record of a run, or None when orbit did not dispatch it."""
    row = connection.execute(sa.select(orbit_runs).where(orbit_runs.c.run_id == run_id)).first()
    return None if row is None else _record_of(row)


def by_trigger(connection: Connection, *, repository: str, trigger: str) -> RecordedRun | None:
    """Return the run already dispatched for a trigger (a redelivered comment or merge), if any."""
    query = sa.select(orbit_runs).where(
        orbit_runs.c.repository == repository, orbit_runs.c.trigger == trigger
    )
    row = connection.execute(query.order_by(orbit_runs.c.run_id.desc())).first()
    return None if row is None else _record_of(row)


def _record_of(row: Any) -> RecordedRun:
    return RecordedRun(
        row.run_id, row.repository, row.purpose, row.workflow, row.trigger, row.title, row.head_sha
    )


def rejection(record: RecordedRun | None, seen: ObservedRun, purpose: str) -> str | None:
    """Return why a run is not orbit's run of that purpose, or None when every field matches the record."""
    checks = (
        (record is None, "not dispatched by orbit"),
        (record is not None and record.purpose != purpose, f"not a {purpose} run"),
        (record is not None and record.repository != seen.repository, "another repository"),
        (record is not None and PurePosixPath(seen.path).name != record.workflow, "another workflow file"),
        (not seen.path.startswith(".github/workflows/"), "not a workflow of the repository"),
        (seen.event != "workflow_dispatch", "not started by a dispatch"),  # a label: never payload text
        (seen.head_repository != seen.repository, "runs code of another repository"),
        (record is not None and seen.head_sha != record.head_sha, "not the commit orbit dispatched"),
    )
    return next((reason for failed, reason in checks if failed), None)


def job_rejection(record: RecordedRun | None, repository: str, head_sha: str) -> str | None:
    """Return why a job is not one of orbit's runs' jobs, or None when its run is recorded and agrees."""
    if record is None:
        return "a job of a run orbit did not dispatch"
    if record.repository != repository:
        return "another repository"
    if head_sha != record.head_sha:
        return "not the commit orbit dispatched"
    return None


def refuse(seen: ObservedRun, reason: str) -> None:
    """Log a run that is not orbit's (once per run and reason) and count it."""
    UNTRUSTED_RUNS.labels(reason).inc()
    key = (seen.run_id, reason)
    if key not in _refused:
        _refused.add(key)
        log.warning("ignoring workflow run %s of %s: %s", seen.run_id, seen.repository, reason)


def effect_done(connection: Connection, *, run_id: int, effect: str) -> bool:
    """Return whether an effect of the run (published, rolled out) was already carried out."""
    query = sa.select(run_effects.c.run_id).where(
        run_effects.c.run_id == run_id, run_effects.c.effect == effect
    )
    return connection.execute(query).first() is not None


def mark_done(connection: Connection, *, run_id: int, effect: str) -> None:
    """Record that an effect of the run was carried out, so a replayed event does not repeat it."""
    if not effect_done(connection, run_id=run_id, effect=effect):
        connection.execute(run_effects.insert().values(run_id=run_id, effect=effect, done_at=time.time()))
