"""Ask GitHub to redeliver the webhooks that failed and that the inbox never stored.

GitHub tries a webhook once. A delivery that found orbit down, or answered with an error, is lost
unless someone asks for it again: a periodic pass lists the App's recent deliveries, keeps those
whose every attempt failed and whose guid the inbox does not hold, and asks for each once.

Asking is recorded before it is done (one row per guid, the guid unique), so that neither a later
pass nor another replica asks again; a request that never brought the delivery is asked once more
after `ASK_AGAIN_AFTER`, and no more. A request GitHub refused for now is forgotten, so the next
pass tries again; one it refused for good counts as asked.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.errors import TemporaryError
from bot.github.hooks import AppHooks, DeliveryAttempt, app_hooks
from bot.inbox import Inbox, deliveries, reading
from bot.settings import Settings

log = logging.getLogger(__name__)

REDELIVERIES = Counter(
    "orbit_redeliveries_total", "Redeliveries asked of GitHub, by outcome (requested|failed)", ["outcome"]
)
WINDOW = timedelta(hours=24)  # failures older than this are left alone
ASK_AGAIN_AFTER = 3600.0  # seconds after which a redelivery that never arrived is asked for once more
MAX_ASKS = 2
FORGET_AFTER = 7 * 24 * 3600.0  # GitHub redelivers nothing older than three days

metadata = sa.MetaData()
requests = sa.Table(
    "redelivery_requests",
    metadata,
    sa.Column("guid", sa.String(64), primary_key=True),
    sa.Column("attempt_id", sa.BigInteger, nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("asks", sa.Integer, nullable=False),  # 0: a request GitHub refused for now
    sa.Column("asked_at", sa.Float, nullable=False),
)


def failed_deliveries(attempts: Iterable[DeliveryAttempt]) -> list[DeliveryAttempt]:
    """Return the latest attempt of each delivery whose every attempt failed, in the order first sent."""
    latest: dict[str, DeliveryAttempt] = {}
    first: dict[str, tuple[datetime, int]] = {}
    succeeded: set[str] = set()
    for attempt in attempts:
        sent = (attempt.delivered_at, attempt.id)
        first[attempt.guid] = min(first.get(attempt.guid, sent), sent)
        if attempt.succeeded:
            succeeded.add(attempt.guid)
        elif attempt.guid not in latest or attempt.id > latest[attempt.guid].id:
            latest[attempt.guid] = attempt
    failed = [attempt for guid, attempt in latest.items() if guid not in succeeded]
    return sorted(failed, key=lambda attempt: first[attempt.guid])


class RedeliveryLog:
    """Which deliveries orbit asked GitHub for, in the inbox's database."""

    def __init__(self, inbox: Inbox, clock: Callable[[], float] = time.time) -> None:
        self._inbox = inbox
        self._clock = clock
        dialect: Any = postgresql if inbox.engine.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(requests).on_conflict_do_nothing(index_elements=["guid"])
        self._insert_new = insert.returning(requests.c.guid)  # a row back: this replica inserted it

    def create_schema(self) -> None:
        """Create the table if it does not exist (replicas starting at once take turns)."""
        self._inbox.create_tables(metadata)

    def to_ask(self, guids: list[str]) -> set[str]:
        """Return those of `guids` the inbox does not hold and that may be asked for now."""
        if not guids:
            return set()
        stored = sa.select(deliveries.c.delivery_id).where(deliveries.c.delivery_id.in_(guids))
        asked = sa.select(requests.c.guid).where(requests.c.guid.in_(guids), sa.not_(self._may_ask()))
        with reading(self._inbox.engine) as connection:
            known = set(connection.scalars(stored)) | set(connection.scalars(asked))
        return set(guids) - known

    def claim(self, attempt: DeliveryAttempt) -> bool:
        """Record that this replica asks for the delivery; False when it was asked for already."""
        row = {
            "guid": attempt.guid,
            "attempt_id": attempt.id,
            "event": attempt.event[:64],
            "asks": 1,
            "asked_at": self._clock(),
        }

        def insert_or_take_over(connection: Connection) -> bool:
            if connection.execute(self._insert_new, row).first() is not None:
                return True
            again = (
                requests.update()
                .where(requests.c.guid == attempt.guid, self._may_ask())
                .values(asks=requests.c.asks + 1, asked_at=row["asked_at"], attempt_id=attempt.id)
            )
            return bool(connection.execute(again).rowcount == 1)

        return self._inbox.write(insert_or_take_over)

    def release(self, guid: str) -> None:
        """Forget a request GitHub refused for now, so that the next pass asks again."""
        self._inbox.write(
            lambda connection: connection.execute(
                requests.update().where(requests.c.guid == guid).values(asks=requests.c.asks - 1, asked_at=0)
            )
        )

    def forget_old(self) -> None:
        """Drop the records of requests older than anything GitHub could still redeliver."""
        cutoff = self._clock() - FORGET_AFTER
        self._inbox.write(
            lambda connection: connection.execute(requests.delete().where(requests.c.asked_at < cutoff))
        )

    def _may_ask(self) -> sa.ColumnElement[bool]:
        """Never asked, or asked long ago without the delivery arriving, fewer than `MAX_ASKS` times."""
        long_ago = self._clock() - ASK_AGAIN_AFTER
        return sa.or_(
            requests.c.asks == 0, sa.and_(requests.c.asks < MAX_ASKS, requests.c.asked_at < long_ago)
        )


@dataclass(frozen=True)
class Pass:
    """What one pass did: the guids it asked for, and those whose request failed."""

    requested: list[str]
    failed: list[str]


class Redeliverer:
    """The periodic pass: at most `limit` redeliveries asked for, each logged and counted."""

    def __init__(
        self, hooks: AppHooks, record: RedeliveryLog, limit: int, window: timedelta = WINDOW
    ) -> None:
        self._hooks = hooks
        self._record = record
        self._limit = limit
        self._window = window

    async def run_once(self) -> Pass:
        """List the recent deliveries and ask for those that failed and were never stored."""
        done = Pass([], [])
        if self._limit == 0:
            return done
        attempts = await self._hooks.recent_deliveries(datetime.now(UTC) - self._window)
        failed = failed_deliveries(attempts)
        wanted = await asyncio.to_thread(self._record.to_ask, [attempt.guid for attempt in failed])
        for attempt in (attempt for attempt in failed if attempt.guid in wanted):
            if len(done.requested) + len(done.failed) >= self._limit:
                break
            if not await asyncio.to_thread(self._record.claim, attempt):
                continue  # another replica asked meanwhile
            (done.requested if await self._ask(attempt) else done.failed).append(attempt.guid)
        await asyncio.to_thread(self._record.forget_old)
        return done

    async def _ask(self, attempt: DeliveryAttempt) -> bool:
        """Ask for one delivery; a failure is logged and counted and stops nothing else."""
        kind = f"{attempt.event}.{attempt.action}" if attempt.action else attempt.event
        try:
            await self._hooks.redeliver(attempt.id)
        except Exception as error:  # one delivery's failure never stops the pass
            if isinstance(error, TemporaryError):
                await asyncio.to_thread(self._record.release, attempt.guid)
            log.warning("could not ask GitHub to redeliver %s (%s): %s", attempt.guid, kind, error)
            REDELIVERIES.labels("failed").inc()
            return False
        log.info(
            "asked GitHub to redeliver %s (%s), which failed with %s %s",
            attempt.guid,
            kind,
            attempt.status_code,
            attempt.status,
        )
        REDELIVERIES.labels("requested").inc()
        return True


def redeliverer_for(settings: Settings, inbox: Inbox) -> Redeliverer:
    """Return the pass over the App's deliveries, its records in the inbox's database (created here)."""
    record = RedeliveryLog(inbox)
    record.create_schema()
    hooks = app_hooks(settings.app_id(), settings.private_key(), settings.github_api_url)
    return Redeliverer(hooks, record, settings.redeliver_limit)
