"""Installation events record which repositories the App can act on."""

from bot.context import Context
from bot.inbox import Inbox
from bot.installations import on_installation, on_repositories, repository_list
from tests.fakes import FakeGitHub, delivery, memory_inbox


def context() -> Context:
    return Context(FakeGitHub(), memory_inbox(), {})


def stored(ctx: Context) -> list[tuple[int, str]]:
    assert isinstance(ctx.store, Inbox)
    return repository_list(ctx.store.engine)


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
    assert stored(ctx) == [(9, "octo-org/a"), (9, "octo-org/b")]

    changed = {
        "action": "added",
        "installation": {"id": 9},
        "repositories_added": [{"full_name": "octo-org/c"}, {"full_name": "octo-org/a"}],
        "repositories_removed": [{"full_name": "octo-org/b"}],
    }
    await on_repositories(delivery("installation_repositories", changed), ctx)
    assert stored(ctx) == [(9, "octo-org/a"), (9, "octo-org/c")]

    await on_installation(
        delivery("installation", installation("created", ["octo-org/a"])), ctx
    )  # redelivered
    assert stored(ctx) == [(9, "octo-org/a"), (9, "octo-org/c")]

    await on_installation(delivery("installation", installation("deleted", [])), ctx)
    assert stored(ctx) == []


async def test_an_installation_event_without_an_id_changes_nothing() -> None:
    ctx = context()
    await on_installation(
        delivery("installation", {"action": "created", "repositories": [{"full_name": "a/b"}]}), ctx
    )
    assert stored(ctx) == []
