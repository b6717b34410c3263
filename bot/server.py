"""Wire the bot together from its settings: database, router, GitHub client, workers, app."""

from fastapi import FastAPI

from bot import commands, installations
from bot.app import create_app
from bot.github import GitHubAppClient
from bot.inbox import Inbox, make_engine
from bot.ingest import Ingest
from bot.router import Router
from bot.settings import Settings, load_settings
from bot.worker import WorkerPool

ROUTERS = (commands.router, installations.router)


def build_app(settings: Settings) -> FastAPI:
    """Return the ASGI app with its inbox, workers and GitHub client."""
    inbox = Inbox(make_engine(settings.database_url), settings.lease_seconds, settings.max_attempts)
    inbox.create_schema()
    router = Router.compose(ROUTERS)
    github = GitHubAppClient(settings.github_app_id, settings.private_key(), settings.github_api_url)
    workers = WorkerPool(inbox, router, github, features={}, concurrency=settings.workers)
    ingest = Ingest(inbox, router, settings.webhook_secret.get_secret_value().encode(), workers.wake)
    return create_app(inbox, ingest, workers, settings.webhook_path)


def app_from_environment() -> FastAPI:
    """Build the app from `ORBIT_*` variables (the uvicorn factory)."""
    return build_app(load_settings())
