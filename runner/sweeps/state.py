"""Where a sweep's points are kept: one row per point, in the bot's database.

Declared when `/retrain` asks for the sweep (so the table shows every point from the start), given
its run id when dispatched, and its result when its run completes. Kept here rather than re-read
from GitHub: a point's result would otherwise mean downloading every point's bundle again at each
update (artifacts expire, too); the dispatch records already hold which runs are orbit's.
Every write is safe to repeat: a row is inserted once, and an update writes the same values again.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.inbox import metadata

PENDING, DONE, FAILED, CANCELLED = "pending", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)

sweep_points = sa.Table(
    "sweep_points",
    metadata,
    sa.Column("repository", sa.String(300), primary_key=True),
    sa.Column("sweep", sa.BigInteger, primary_key=True),  # the id of the `/retrain` comment
    sa.Column("point", sa.Integer, primary_key=True),
    sa.Column("pull", sa.Integer, nullable=False),
    sa.Column("sha", sa.String(40), nullable=False),
    sa.Column("experiment", sa.String(64), nullable=False),
    sa.Column("params", sa.String(300), nullable=False),  # `key=value` words, the grid's key order
    sa.Column("run_id", sa.BigInteger, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("result", sa.Text, nullable=True),  # JSON: the point's metrics, or why it failed
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_sweep_points_experiment", "repository", "pull", "experiment"),
)


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep as recorded."""

    sweep: int
    index: int
    pull: int
    sha: str
    experiment: str
    params: tuple[str, ...]
    run_id: int | None = None
    status: str = PENDING
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> tuple[tuple[str, str], ...]:
        """Return the point's settings as (key, value) pairs."""
        return tuple((key, value) for key, _, value in (word.partition("=") for word in self.params))


def experiment_name(sweep: int, index: int) -> str:
    """Return a point's DVC experiment name: the same for a redelivered comment."""
    return f"sweep-{sweep}-{index}"


def declare(connection: Connection, *, repository: str, points: list[SweepPoint]) -> None:
    """Record a sweep's points, those not recorded yet."""
    for point in points:
        if _row(connection, repository, point.sweep, point.index) is None:
            connection.execute(
                sweep_points.insert().values(
                    repository=repository,
                    sweep=point.sweep,
                    point=point.index,
                    pull=point.pull,
                    sha=point.sha,
                    experiment=point.experiment,
                    params=" ".join(point.params),
                    status=PENDING,
                    updated_at=time.time(),
                )
            )


def attach_run(connection: Connection, *, repository: str, sweep: int, index: int, run_id: int) -> None:
    """Record the run a point was dispatched as."""
    _update(connection, repository, sweep, index, run_id=run_id)


def record_result(
    connection: Connection, *, repository: str, sweep: int, index: int, status: str, result: dict[str, Any]
) -> None:
    """Record how a point's run ended: its status and its result."""
    _update(connection, repository, sweep, index, status=status, result=json.dumps(result))


def points_of(connection: Connection, *, repository: str, sweep: int) -> list[SweepPoint]:
    """Return a sweep's points, in grid order."""
    query = sa.select(sweep_points).where(
        sweep_points.c.repository == repository, sweep_points.c.sweep == sweep
    )
    return [_point(row) for row in connection.execute(query.order_by(sweep_points.c.point))]


def by_experiment(
    connection: Connection, *, repository: str, pull: int, experiment: str
) -> SweepPoint | None:
    """Return the point orbit ran for this PR under that experiment name, if any."""
    query = sa.select(sweep_points).where(
        sweep_points.c.repository == repository,
        sweep_points.c.pull == pull,
        sweep_points.c.experiment == experiment,
    )
    row = connection.execute(query).first()
    return None if row is None else _point(row)


def _row(connection: Connection, repository: str, sweep: int, index: int) -> Any:
    query = sa.select(sweep_points).where(
        sweep_points.c.repository == repository,
        sweep_points.c.sweep == sweep,
        sweep_points.c.point == index,
    )
    return connection.execute(query).first()


def _update(connection: Connection, repository: str, sweep: int, index: int, **values: Any) -> None:
    connection.execute(
        sweep_points.update()
        .where(
            sweep_points.c.repository == repository,
            sweep_points.c.sweep == sweep,
            sweep_points.c.point == index,
        )
        .values(**values, updated_at=time.time())
    )


def _point(row: Any) -> SweepPoint:
    return SweepPoint(
        sweep=row.sweep,
        index=row.point,
        pull=row.pull,
        sha=row.sha,
        experiment=row.experiment,
        params=tuple(row.params.split()),
        run_id=row.run_id,
        status=row.status,
        result=json.loads(row.result) if row.result else {},
    )
