"""Workers: claim work items from the inbox and run their handlers, with retries and dead letters."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from bot import logs
from bot.context import Context, Feature
from bot.errors import PermanentError, TemporaryError
from bot.events import installation_id
from bot.github import GitHubApi, GitHubApp
from bot.inbox import DEAD, PRUNE_BATCH, Inbox, WorkItem
from bot.metrics import INBOX_DEPTH, INBOX_OLDEST_PENDING, WORK_ATTEMPTS
from bot.router import Router

log = logging.getLogger(__name__)


class WorkerPool:
    """Up to `concurrency` handlers at once in this process, woken by new deliveries or a short poll."""

    def __init__(
        self,
        inbox: Inbox,
        router: Router,
        app: GitHubApp,
        features: dict[str, Feature],
        concurrency: int = 8,
        poll_seconds: float = 1.0,
        max_handler_seconds: float = 3600.0,
    ) -> None:
        self.inbox, self.router, self.app, self.features = inbox, router, app, features
        self.concurrency, self.poll_seconds = concurrency, poll_seconds
        self.max_handler_seconds = max_handler_seconds
        self._wake = asyncio.Event()
        self._started: dict[int, float] = {}  # item id -> when its handler started
        self._completed: list[int] = []  # done, to be written with the next claim

    def wake(self) -> None:
        """Tell the pool that new work is waiting."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim work for every free worker and run it until `stop` is set; then finish what runs."""
        running: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            self._wake.set()  # a worker is free

        while not stop.is_set():
            free = self.concurrency - len(running)
            self._wake.clear()  # before claiming: a delivery recorded meanwhile wakes the next pass
            items = await self._claim(free) if free else []
            for item in items:
                task = asyncio.create_task(self.handle(item, with_next_claim=True))
                running.add(task)
                task.add_done_callback(finished)
            if len(items) < free or not free:
                await self._wait(stop)
        await asyncio.gather(*running)
        await self._flush_completed()

    async def _flush_completed(self) -> None:
        """Write the completions no claim has written yet (as the pool stops)."""
        completed, self._completed = self._completed, []
        try:
            await asyncio.to_thread(self.inbox.complete_many, completed)
        except Exception:  # their leases lapse and they run again: handlers are idempotent
            log.exception("could not record %s completed work items", len(completed))

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _claim(self, limit: int) -> list[WorkItem]:
        """Record the items completed since the last claim and claim for every free worker, at once."""
        completed, self._completed = self._completed, []
        try:  # one transaction for every free worker: a burst does not queue on the database
            return await asyncio.to_thread(self.inbox.claim_many, limit, completed)
        except Exception:  # the database is out of reach for now: log it and poll again
            log.exception("could not claim work from the inbox")
            self._completed = completed + self._completed
            return []

    async def handle(self, item: WorkItem, with_next_claim: bool = False) -> None:
        """Run every handler of the item's delivery and record the outcome, holding its lease meanwhile.

        `with_next_claim`: a success is written by the pool's next claim, in its transaction (the pool
        claims as soon as a handler ends), instead of a transaction of its own.
        What is logged meanwhile carries the delivery's id, repository and pull request.
        """
        self._started[item.id] = time.monotonic()
        keeper = asyncio.create_task(self._keep_lease(item))
        try:
            with logs.delivery_scope(item.delivery):
                await self._handle(item, with_next_claim)
        finally:
            keeper.cancel()
            self._started.pop(item.id, None)

    async def _keep_lease(self, item: WorkItem) -> None:
        """Renew the item's lease while its handler runs, until it has run for `max_handler_seconds`.

        A handler longer than the lease is not taken by another worker meanwhile; one that runs
        past the limit is stuck: its lease lapses, so another replica can take the item over,
        and `/readyz` fails, so that this one is restarted.
        """
        every = self.inbox.lease_seconds / 3
        while time.monotonic() - self._started[item.id] + every < self.max_handler_seconds:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.inbox.extend, [item.id])
            except Exception:  # the database is out of reach: the next renewal tries again
                log.exception("could not renew the lease of work item %s", item.id)

    def stuck(self) -> list[int]:
        """Return the items whose handlers have run past `max_handler_seconds`."""
        now = time.monotonic()
        return [item for item, began in self._started.items() if now - began > self.max_handler_seconds]

    async def _handle(self, item: WorkItem, with_next_claim: bool) -> None:
        delivery = item.delivery
        context = Context(self._github_for(item), self.inbox, self.features)
        try:
            for handler in self.router.handlers_for(delivery.event, delivery.action):
                await handler(delivery, context)
        except TemporaryError as error:
            log.warning("delivery %s failed for now: %s", delivery.delivery_id, error)
            outcome = await asyncio.to_thread(self.inbox.fail, item, str(error), True, error.retry_after)
            WORK_ATTEMPTS.labels("retry" if outcome != DEAD else "dead").inc()
        except PermanentError as error:
            await asyncio.to_thread(self.inbox.fail, item, str(error), False)
            WORK_ATTEMPTS.labels("dead").inc()
        except Exception as error:  # a handler bug: retried like a temporary failure, then dead-lettered
            log.exception("handler failed on delivery %s", delivery.delivery_id)
            reason = f"{type(error).__name__}: {error}"
            outcome = await asyncio.to_thread(self.inbox.fail, item, reason, True)
            WORK_ATTEMPTS.labels("retry" if outcome != DEAD else "dead").inc()
        else:
            if with_next_claim:
                self._completed.append(item.id)
                self._wake.set()
            else:
                await asyncio.to_thread(self.inbox.complete, item)
            WORK_ATTEMPTS.labels("done").inc()

    def _github_for(self, item: WorkItem) -> GitHubApi:
        install = installation_id(item.delivery)
        return (
            self.app.for_installation(install) if install is not None else cast(GitHubApi, _NoInstallation())
        )

    def refresh_depth(self) -> None:
        """Publish the inbox depth gauges: items by status, and how long the oldest pending one waits."""
        counts = self.inbox.counts()
        for status in ("pending", "waiting", "running", "done", "dead"):
            INBOX_DEPTH.labels(status).set(counts.get(status, 0))
        now = time.time()
        oldest = self.inbox.oldest_pending(now)
        INBOX_OLDEST_PENDING.set(0.0 if oldest is None else now - oldest)


class _NoInstallation:
    """The GitHub client of a delivery that names no installation: every call is a permanent error."""

    def __getattr__(self, name: str) -> object:
        raise PermanentError(f"the delivery names no installation, so GitHub cannot be called ({name})")


class Retention:
    """The retention pass: delete handled deliveries older than `days`, a short batch at a time.

    On SQLite, which has one writer, a batch holds the ingest back while it runs, and a worker at its
    lower CPU priority that holds the writer runs at the ingest's expense. So each batch is short (100
    rows took about 2 ms) and the pass then rests `rest_ratio` times as long as the batch took, at most
    `MAX_REST_SECONDS`: pruning holds the writer at most a twentieth of the time. Under a flood of
    deliveries it falls behind and catches up once the flood ends; otherwise it deletes about 2,500 rows
    a second. PostgreSQL has no one writer: there the batches follow each other. A pass goes on until
    nothing past the retention is left; a stop cancels it (`Periodic.cut_short`) between two batches or
    in one, whose transaction then commits or rolls back whole. Dead items are kept for `orbit inbox retry`.
    """

    EVERY_SECONDS = 600.0
    REST_RATIO = 19.0
    MAX_REST_SECONDS = 1.0

    def __init__(self, inbox: Inbox, days: float, rest_ratio: float = REST_RATIO) -> None:
        self.inbox, self.days, self.rest_ratio = inbox, days, rest_ratio

    async def run_once(self, now: float | None = None) -> int:
        """Delete every handled delivery past the retention; return how many."""
        before = (time.time() if now is None else now) - self.days * 86_400
        pruned = 0
        while True:
            began = time.monotonic()
            deleted = await asyncio.to_thread(self.inbox.prune_batch, before)
            pruned += deleted
            if deleted < PRUNE_BATCH:
                break
            await asyncio.sleep(self.rest_after(time.monotonic() - began))
        if pruned:
            log.info("retention: deleted %s deliveries handled over %g days ago", pruned, self.days)
        return pruned

    def rest_after(self, took: float) -> float:
        """Return how long to leave the writer to others after a batch that took `took` seconds."""
        if not self.inbox.writes_locally:  # PostgreSQL: no one writer that the ingest waits for
            return 0.0
        return min(self.MAX_REST_SECONDS, self.rest_ratio * took)


STRANDED_EVERY_SECONDS = 5.0  # how late, at worst, a delivery whose key's lock was held elsewhere runs


def stranded_release(inbox: Inbox) -> Callable[[], Awaitable[int]]:
    """Return the periodic pass that releases waiting items with nothing ahead of them (PostgreSQL)."""

    async def run_once() -> int:
        released = await asyncio.to_thread(inbox.release_stranded)
        if released:
            log.warning("released %s waiting work items that had nothing ahead of them", released)
        return released

    return run_once
