"""The bot's real ingest path for the benchmark: HTTP, signature, parsing, durable group-committed write.

Workers are left out: by design the acknowledgement never waits on them.
"""

import os

from starlette.types import ASGIApp

from bot.context import Context
from bot.events import PullRequestEvent
from bot.inbox import Inbox, make_engine
from bot.ingest import Ingest
from bot.router import Router
from bot.web import create_app


def app() -> ASGIApp:
    """Build the ingest-only app from ORBIT_DATABASE_URL and ORBIT_WEBHOOK_SECRET."""
    inbox = Inbox(make_engine(os.environ["ORBIT_DATABASE_URL"]))
    inbox.create_schema()
    router = Router()

    @router.on(PullRequestEvent)
    async def wanted(_: PullRequestEvent, __: Context) -> None:
        """Make pull_request deliveries wanted, so each is stored."""

    ingest = Ingest(inbox, router, os.environ["ORBIT_WEBHOOK_SECRET"].encode(), lambda: None)
    return create_app(inbox, ingest, workers=None)
