"""The inbox's Core statements run through SQLite's driver: bound as SQLAlchemy would bind them."""

from pathlib import Path

from bot import inbox_driver as driver
from bot.inbox import FINISH_ITEMS, RELEASE_NEXT, RUNNING, Inbox, make_engine
from tests.bot.test_inbox import new


def test_a_list_parameter_gets_a_placeholder_per_value_and_the_literals_keep_their_places() -> None:
    sql, args = driver.Prepared(FINISH_ITEMS).bind({"ids": [7, 8, 9]})
    assert "work_items.id IN (?, ?, ?)" in sql and "POSTCOMPILE" not in sql
    assert args == ["done", None, None, 7, 8, 9, "running"]


def test_a_parameter_named_twice_is_bound_twice() -> None:
    sql, args = driver.Prepared(RELEASE_NEXT).bind({"key": "o/r#1"})
    assert sql.count("?") == len(args) == 6
    assert args == ["pending", "o/r#1", "waiting", "o/r#1", "pending", "running"]


def test_an_empty_list_matches_nothing(tmp_path: Path) -> None:
    inbox = Inbox(make_engine(f"sqlite:///{tmp_path / 'orbit.db'}"))
    inbox.create_schema()
    inbox.record([new(delivery_id="d-1")])
    claimed = inbox.claim_many(1)
    with inbox.engine.begin() as connection:
        assert driver.rows(connection, FINISH_ITEMS, {"ids": []}) == []
    assert [item["status"] for item in inbox.list_items()] == [RUNNING], "nothing was finished"
    with inbox.engine.begin() as connection:
        finished = driver.rows(connection, FINISH_ITEMS, {"ids": [claimed[0].id]})
    assert [row.ordering_key for row in finished] == [new(delivery_id="d-1").ordering_key]
    inbox.engine.dispose()
