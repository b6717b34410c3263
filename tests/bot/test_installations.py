"""Installation events record which repositories the App can act on."""

import sqlalchemy as sa

from bot.context import Context
from bot.inbox import metadata
from bot.installations import on_installation, on_repositories, repository_list
from tests.fakes import FakeGitHub, delivery


def context() -> Context:
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    return Context(FakeGitHub(), engine, {})


def installation(action: str, repos: list[str]) -> dict[str, object]:
    return {
        "action": action,
        "installation": {"id": 9, "account": {"login": "octo-org"}},
        "repositories": [{"full_name": name} for name in repos],
    }


async def test_installation_lifecycle() -> None:
    ctx = context()
    await on_installation(
        delivery("installation", installation("created", ["octo-org/a", "octo-org/b"])), ctx
    )
    assert repository_list(ctx.engine) == [(9, "octo-org/a"), (9, "octo-org/b")]

    changed = {
        "action": "added",
        "installation": {"id": 9},
        "repositories_added": [{"full_name": "octo-org/c"}, {"full_name": "octo-org/a"}],
        "repositories_removed": [{"full_name": "octo-org/b"}],
    }
    await on_repositories(delivery("installation_repositories", changed), ctx)
    assert repository_list(ctx.engine) == [(9, "octo-org/a"), (9, "octo-org/c")]

    await on_installation(
        delivery("installation", installation("created", ["octo-org/a"])), ctx
    )  # redelivered
    assert repository_list(ctx.engine) == [(9, "octo-org/a"), (9, "octo-org/c")]

    await on_installation(delivery("installation", installation("deleted", [])), ctx)
    assert repository_list(ctx.engine) == []


async def test_an_installation_event_without_an_id_changes_nothing() -> None:
    ctx = context()
    await on_installation(
        delivery("installation", {"action": "created", "repositories": [{"full_name": "a/b"}]}), ctx
    )
    assert repository_list(ctx.engine) == []
