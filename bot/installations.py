"""Which repositories the App can act on, recorded from installation events."""

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.context import Context
from bot.delivery import Delivery
from bot.inbox import metadata
from bot.payloads import dig, installation_id
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


def _names(delivery: Delivery, key: str) -> list[str]:
    listed = delivery.payload.get(key)
    if not isinstance(listed, list):
        return []
    return [name for item in listed if (name := dig(item, "full_name", kind=str))]


@router.on("installation")
async def on_installation(delivery: Delivery, ctx: Context) -> None:
    """Record an installation, its repositories and its state; forget it when deleted."""
    install = installation_id(delivery)
    if install is None:
        return
    account = dig(delivery.payload, "installation", "account", "login", kind=str) or ""
    with ctx.engine.begin() as connection:
        connection.execute(installations.delete().where(installations.c.installation_id == install))
        if delivery.action == "deleted":
            connection.execute(
                installed_repositories.delete().where(installed_repositories.c.installation_id == install)
            )
            return
        connection.execute(
            installations.insert().values(
                installation_id=install, account=account, suspended=delivery.action == "suspend"
            )
        )
    _add(ctx, install, _names(delivery, "repositories"))


@router.on("installation_repositories")
async def on_repositories(delivery: Delivery, ctx: Context) -> None:
    """Record repositories added to or removed from an installation."""
    install = installation_id(delivery)
    if install is None:
        return
    _add(ctx, install, _names(delivery, "repositories_added"))
    removed = _names(delivery, "repositories_removed")
    if removed:
        with ctx.engine.begin() as connection:
            connection.execute(
                installed_repositories.delete().where(
                    installed_repositories.c.installation_id == install,
                    installed_repositories.c.full_name.in_(removed),
                )
            )


def _add(ctx: Context, install: int, names: list[str]) -> None:
    with ctx.engine.begin() as connection:
        for name in names:
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
    with engine.connect() as connection:
        return [(row.installation_id, row.full_name) for row in connection.execute(query)]
