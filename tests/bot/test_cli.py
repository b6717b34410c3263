"""The `orbit` command line: parsing, and the inbox listing and retry against a real database."""

import json
from pathlib import Path

import pytest

from bot.cli import build_parser, main
from bot.events import ordering_key
from bot.inbox import Inbox, NewDelivery, make_engine
from tests.fakes import body_of, comment_payload, delivery


def test_every_subcommand_parses() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "--port", "9000", "--workers", "2"]).port == 9000
    assert parser.parse_args(["inbox", "list", "--status", "dead"]).status == "dead"
    assert parser.parse_args(["inbox", "retry", "3"]).id == 3
    assert parser.parse_args(["local", "demo"]).project == Path(".")  # the repository root has dvc.yaml
    with pytest.raises(SystemExit):
        parser.parse_args(["inbox", "list", "--status", "bogus"])


def test_serve_takes_a_role_of_three() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "--role", "worker"]).role == "worker"
    assert parser.parse_args(["serve"]).role is None  # ORBIT_ROLE decides, else all
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--role", "both"])


def test_inbox_list_and_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'orbit.db'}"
    monkeypatch.setenv("ORBIT_DATABASE_URL", url)
    inbox = Inbox(make_engine(url))
    inbox.create_schema()
    payload = comment_payload("/help")
    item = delivery("issue_comment", payload, "d-1")
    inbox.record([NewDelivery(item, ordering_key(item), body_of(payload))])
    claimed = inbox.claim()
    assert claimed is not None
    inbox.fail(claimed, "GitHub answered 404 to create_comment", temporary=False)

    assert main(["inbox", "list", "--status", "dead"]) == 0
    listed = capsys.readouterr().out
    assert "issue_comment.created" in listed
    assert "GitHub answered 404" in listed

    assert main(["inbox", "retry", str(claimed.id)]) == 0
    assert inbox.counts() == {"pending": 1}
    assert main(["inbox", "retry", str(claimed.id)]) == 1
    assert "no dead work item" in capsys.readouterr().err


def test_inbox_list_json_is_an_array_of_the_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'orbit.db'}"
    monkeypatch.setenv("ORBIT_DATABASE_URL", url)
    inbox = Inbox(make_engine(url))
    inbox.create_schema()
    for number in (1, 2):
        item = delivery("issue_comment", comment_payload("/help"), f"d-{number}")
        inbox.record([NewDelivery(item, ordering_key(item), body_of(comment_payload("/help")))])

    assert main(["inbox", "list", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [(i["delivery_id"], i["status"], i["event"], i["action"]) for i in items] == [
        ("d-2", "waiting", "issue_comment", "created"),  # behind d-1: the same pull request
        ("d-1", "pending", "issue_comment", "created"),
    ]
    assert {"id", "attempts", "last_error", "available_at"} <= set(items[0])

    assert main(["inbox", "list", "--json", "--status", "dead"]) == 0
    assert json.loads(capsys.readouterr().out) == []
