"""Commands, where a slip in the code would go unnoticed: who counts as a bot, which line endings end a
command, how far a near miss reaches, and what one reply to several commands says and reacts.

Written to kill the mutants scripts/mutation found alive.
"""

from typing import Any

import msgspec
import pytest

from bot import commands
from bot.commands import _distance, near_miss, on_comment, parse_commands, read_comment
from bot.context import CommandCall, Context, Feature
from bot.events import IssueCommentEvent
from tests.fakes import FakeGitHub, comment_payload, delivery, memory_inbox


def event_of(payload: dict[str, Any]) -> IssueCommentEvent:
    return msgspec.convert(payload, IssueCommentEvent)


def test_a_user_of_type_bot_is_a_bot_whatever_its_login() -> None:
    comment = read_comment(event_of(comment_payload("/retrain", user="helper", user_type="Bot")))
    assert comment is not None
    assert comment.by_bot is True
    person = read_comment(event_of(comment_payload("/retrain", user="octocat", user_type="User")))
    assert person is not None
    assert person.by_bot is False


def test_a_comment_without_a_body_reads_as_empty() -> None:
    payload = comment_payload("")
    payload["comment"]["body"] = None
    comment = read_comment(event_of(payload))
    assert comment is not None
    assert comment.body == ""


def test_windows_line_endings_end_a_command_line() -> None:
    parsed = parse_commands("/retrain\r\n/deploy now\r\n")
    assert parsed.commands == [("retrain", ""), ("deploy", "now")]


def test_a_repeated_unknown_word_is_looked_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """One comment costs bounded work: 5,000 lines of the same slip cost one near-miss search."""
    looked: list[str] = []

    def counting(word: str) -> str | None:
        looked.append(word)
        return near_miss(word)

    monkeypatch.setattr(commands, "near_miss", counting)
    parsed = parse_commands("/retrian\n" * 5000 + "/other\n" * 5000)
    assert sorted(looked) == ["other", "retrian"]
    assert parsed.near_misses == [("retrian", "retrain")]


@pytest.mark.parametrize(
    ("word", "command"),
    [
        ("hel", "help"),  # one letter short: as far as /help reaches
        ("he", None),
        ("helpme", None),
        ("retra", "retrain"),  # two letters short: as far as the others reach
        ("retrainxx", "retrain"),
        ("retr", None),
        ("deplo", "deploy"),
        ("rollbak", "rollback"),
    ],
)
def test_a_near_miss_reaches_exactly_as_far_as_its_command_allows(word: str, command: str | None) -> None:
    assert near_miss(word) == command


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("", "help", 4),
        ("help", "", 4),
        ("a", "ab", 1),
        ("ab", "a", 1),
        ("ab", "ba", 2),
        ("kitten", "sitting", 3),
        ("retrian", "retrain", 2),
        ("deploy", "deploy", 0),
    ],
)
def test_distance_is_the_levenshtein_distance(a: str, b: str, distance: int) -> None:
    assert _distance(a, b) == distance


class Answering:
    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.calls: list[str] = []

    async def __call__(self, ctx: Context, call: CommandCall) -> str:
        self.calls.append(call.args)
        return self.reply


async def reply_to(body: str, features: dict[str, Feature]) -> tuple[str, str, FakeGitHub]:
    github = FakeGitHub(permissions={"octocat": "write"})
    await on_comment(
        delivery("issue_comment", comment_payload(body)), Context(github, memory_inbox(), features)
    )
    ((_, _, reply),) = github.named("comment")
    return reply, github.named("reaction")[-1][2], github


async def test_a_slip_and_a_command_in_one_comment_run_the_command_and_end_confused() -> None:
    deploy = Answering("deploying")
    reply, reaction, _ = await reply_to("/retrian\n/deploy", {"deploy": deploy})
    assert deploy.calls == [""]
    assert reply == (
        "<!-- orbit:reply-to 1007 confused -->\n"
        "`/retrian` is not a command I know; did you mean `/retrain`? Nothing was done.\n\ndeploying"
    )
    assert reaction == "confused"


async def test_help_does_not_stop_the_commands_after_it() -> None:
    retrain = Answering("training queued")
    reply, reaction, _ = await reply_to("/help\n/retrain", {"retrain": retrain})
    assert retrain.calls == [""]
    assert reply.endswith("\n\ntraining queued")
    assert reaction == "rocket"


async def test_one_failed_command_makes_the_whole_reply_confused_even_when_a_later_one_succeeds() -> None:
    deploy = Answering("deploying")
    reply, reaction, github = await reply_to("/retrain\n/deploy", {"deploy": deploy})
    assert deploy.calls == [""]
    assert reply == (
        "<!-- orbit:reply-to 1007 confused -->\n"
        "`/retrain` is not configured on this installation yet; nothing was done.\n\ndeploying"
    )
    assert reaction == "confused"
    assert github.named("permission") == [("octo-org/model", "octocat")]  # asked once for both
