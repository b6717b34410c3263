"""`orbit dev`: feed the App's new webhook deliveries to a server on this machine, no public URL needed.

GitHub cannot reach a laptop, but it keeps every delivery it tried. The forwarder polls that list
as the App, and posts each delivery that is new since it started to the local webhook URL, with
GitHub's headers and a signature made with the local webhook secret over the exact bytes it sends.
Each attempt is forwarded once; one the local server could not be reached for is tried again at the
next poll. What Probot users need smee.io for.
"""

import asyncio
import logging
import re
import signal
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import orjson

from bot.delivery import signature_of
from bot.github.hooks import AppHooks, DeliveryAttempt, app_hooks
from bot.settings import Settings

log = logging.getLogger(__name__)

# An attempt shows in the list once it was answered: up to GitHub's ten-second timeout after a later one.
LOOKBACK = timedelta(minutes=2)
EARLIEST = datetime.min.replace(tzinfo=UTC)
PASSED_HEADERS = frozenset(
    {
        "user-agent",
        "x-github-hook-id",
        "x-github-hook-installation-target-id",
        "x-github-hook-installation-target-type",
    }
)
DURATION = re.compile(r"^(?P<amount>[0-9]+)(?P<unit>[smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """Return the time `--since` names: a duration before `now` (`90s`, `15m`, `2h`, `1d`) or an ISO time."""
    duration = DURATION.match(text.strip())
    if duration:
        return now - timedelta(**{UNITS[duration["unit"]]: int(duration["amount"])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since: {text!r} is neither a duration (15m, 2h) nor an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Forwarded:
    """A delivery posted to the local server, and the status it answered."""

    attempt: DeliveryAttempt
    status: int


class Forwarder:
    """Posts the deliveries GitHub lists to `target`, each attempt once."""

    def __init__(
        self, hooks: AppHooks, target: str, secret: bytes, client: httpx.AsyncClient, since: datetime | None
    ) -> None:
        self._hooks, self._target, self._secret, self._client = hooks, target, secret, client
        self._since = since or EARLIEST
        self._floor = 0  # attempts up to this id came before the start (when no `since` was given)
        self._forwarded: dict[int, datetime] = {}
        self._newest = since or EARLIEST  # the newest delivery time seen, by GitHub's clock

    async def start(self) -> None:
        """Note the newest delivery GitHub lists: only later ones are forwarded, unless `since` was given."""
        if self._since is not EARLIEST:
            return
        newest = await self._hooks.recent_deliveries(EARLIEST, max_pages=1)
        self._floor = max((attempt.id for attempt in newest), default=0)
        self._newest = max((attempt.delivered_at for attempt in newest), default=datetime.now(UTC))

    async def poll(self) -> list[Forwarded]:
        """Forward every new attempt GitHub lists, oldest first; return what the local server answered."""
        horizon = max(self._since, self._newest - LOOKBACK)
        attempts = await self._hooks.recent_deliveries(horizon)
        self._newest = max([self._newest, *(attempt.delivered_at for attempt in attempts)])
        forwarded = []
        for attempt in reversed(attempts):
            if self._is_new(attempt):
                answered = await self._forward(attempt)
                if answered is not None:
                    self._forwarded[attempt.id] = attempt.delivered_at
                    forwarded.append(answered)
        self._forwarded = {key: at for key, at in self._forwarded.items() if at >= horizon}
        return forwarded

    def _is_new(self, attempt: DeliveryAttempt) -> bool:
        return (
            attempt.id > self._floor
            and attempt.delivered_at >= self._since
            and attempt.id not in self._forwarded
        )

    async def _forward(self, attempt: DeliveryAttempt) -> Forwarded | None:
        """Post one attempt's payload; None when GitHub or the local server could not be reached."""
        kind = f"{attempt.event}.{attempt.action}" if attempt.action else attempt.event
        try:
            request = await self._hooks.delivery_request(attempt.id)
            body = orjson.dumps(request.payload)
            passed = {k: v for k, v in request.headers.items() if k.lower() in PASSED_HEADERS}
            headers = passed | {
                "content-type": "application/json",
                "x-github-event": attempt.event,
                "x-github-delivery": attempt.guid,
                "x-hub-signature-256": signature_of(self._secret, body),
            }
            answer = await self._client.post(self._target, content=body, headers=headers)
        except Exception as error:  # GitHub or the local server is unreachable: the next poll tries again
            log.warning("could not forward %s (%s): %s", attempt.guid, kind, type(error).__name__)
            return None
        log.info("forwarded %s (%s): %s %s", attempt.guid, kind, answer.status_code, answer.text[:200])
        return Forwarded(attempt, answer.status_code)

    async def run(self, stop: asyncio.Event, every: float) -> None:
        """Poll every `every` seconds until `stop` is set; a failed poll is logged and the next one runs."""
        await self.start()
        after = f"delivery {self._floor}" if self._since is EARLIEST else self._since.isoformat()
        log.info(
            "forwarding the App's deliveries after %s to %s every %s s; Ctrl-C stops",
            after,
            self._target,
            every,
        )
        while not stop.is_set():
            try:
                await self.poll()
            except Exception as error:  # GitHub is out of reach for now
                log.warning("could not list the App's deliveries: %s", error)
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                continue


async def forward_until_stopped(
    settings: Settings, target: str, since: datetime | None, every: float
) -> None:
    """Forward deliveries to `target` until SIGINT (Ctrl-C) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    hooks = app_hooks(settings.app_id(), settings.private_key(), settings.github_api_url)
    secret = settings.webhook_secret.get_secret_value().encode()
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client:
        await Forwarder(hooks, target, secret, client, since).run(stop, every)
    log.info("stopped")
