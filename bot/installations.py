"""Which repositories the App can act on, recorded from installation events.

The handlers write through the inbox's one writer, in a thread: never on the event loop, never
beside another writer of the same SQLite file.
"""

import asyncio
import functools

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.context import Context
from bot.events import InstallationEvent, InstallationRepositoriesEvent, RepositoryName
from bot.inbox import metadata, reading
from bot.router import Router

router = Router()
installations = sa.Table(
    "installations",
    metadata,
    sa.Column("installation_id", sa.BigInteger, primary_key=True),
    sa.Column("account", sa.String(200), nullable=False),
    sa.Column("suspended", sa.Boolean, nullable=False, default=False),
)
installed_repositories = sa.Table(
    "installed_repositories",
    metadata,
    sa.Column("installation_id", sa.BigInteger, primary_key=True),
    sa.Column("full_name", sa.String(300), primary_key=True),
)


@router.on(InstallationEvent)
async def on_installation(event: InstallationEvent, ctx: Context) -> None:
    """Record an installation, its repositories and its state; forget it when deleted."""
    await asyncio.to_thread(ctx.store.write, functools.partial(_record_installation, event))


@router.on(InstallationRepositoriesEvent)
async def on_repositories(event: InstallationRepositoriesEvent, ctx: Context) -> None:
    """Record repositories added to or removed from an installation."""
    await asyncio.to_thread(ctx.store.write, functools.partial(_record_repositories, event))


def _record_installation(event: InstallationEvent, connection: Connection) -> None:
    install = event.installation.id
    account = event.installation.account.login if event.installation.account else ""
    connection.execute(installations.delete().where(installations.c.installation_id == install))
    if event.action == "deleted":
        connection.execute(
            installed_repositories.delete().where(installed_repositories.c.installation_id == install)
        )
        return
    connection.execute(
        installations.insert().values(
            installation_id=install, account=account, suspended=event.action == "suspend"
        )
    )
    _add(connection, install, event.repositories or [])


def _record_repositories(event: InstallationRepositoriesEvent, connection: Connection) -> None:
    install = event.installation.id
    _add(connection, install, event.repositories_added)
    removed = [repository.full_name for repository in event.repositories_removed]
    if removed:
        connection.execute(
            installed_repositories.delete().where(
                installed_repositories.c.installation_id == install,
                installed_repositories.c.full_name.in_(removed),
            )
        )


def _add(connection: Connection, install: int, repositories: list[RepositoryName]) -> None:
    for name in {repository.full_name for repository in repositories}:
        exists = connection.execute(
            sa.select(installed_repositories.c.full_name).where(
                installed_repositories.c.installation_id == install,
                installed_repositories.c.full_name == name,
            )
        ).first()
        if exists is None:
            connection.execute(
                installed_repositories.insert().values(installation_id=install, full_name=name)
            )


def repository_list(engine: Engine) -> list[tuple[int, str]]:
    """Return (installation, repository) pairs the App can act on, from the database."""
    query = sa.select(installed_repositories).order_by(installed_repositories.c.full_name)
    with reading(engine) as connection:
        return [(row.installation_id, row.full_name) for row in connection.execute(query)]
