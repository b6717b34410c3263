"""Slash commands: given this comment, GitHub got these reactions and this reply."""

import pytest

from bot.commands import Parsed, on_comment, parse_commands
from bot.context import CommandCall, Context, Feature
from tests.fakes import FakeGitHub, comment_payload, delivery, memory_inbox


def context(github: FakeGitHub, features: dict[str, Feature] | None = None) -> Context:
    return Context(github, memory_inbox(), features or {})


class RecordingFeature:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str, str]] = []

    async def __call__(self, ctx: Context, call: CommandCall) -> str:
        self.calls.append((call.repo.full_name, call.pull, call.sender, call.args))
        return "training queued"


def test_commands_are_the_first_word_of_a_line() -> None:
    body = "Looks good.\n/retrain  fast please\r\nnot /deploy here\n/help"
    assert parse_commands(body) == Parsed([("retrain", "fast please"), ("help", "")], [])
    assert not parse_commands("/ retrain")


async def test_help_replies_and_reacts() -> None:
    github = FakeGitHub()
    await on_comment(delivery("issue_comment", comment_payload("/help")), context(github))
    assert github.named("reaction") == [("octo-org/model", 1007, "eyes"), ("octo-org/model", 1007, "rocket")]
    ((repo, number, body),) = github.named("comment")
    assert (repo, number) == ("octo-org/model", 7)
    assert body.startswith("<!-- orbit:reply-to 1007 rocket -->\n")
    assert "/retrain" in body
    assert "/deploy" in body
    assert github.named("permission") == []


async def test_a_writer_hands_retrain_to_the_feature() -> None:
    github, feature = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    await on_comment(
        delivery("issue_comment", comment_payload("/retrain now")), context(github, {"retrain": feature})
    )
    assert feature.calls == [("octo-org/model", 7, "octocat", "now")]
    assert github.named("comment")[0][2].endswith("\ntraining queued")
    assert github.named("reaction")[-1][2] == "rocket"


@pytest.mark.parametrize("permission", ["read", "triage", "none"])
async def test_a_non_writer_is_refused_and_nothing_happens(permission: str) -> None:
    github, feature = FakeGitHub(permissions={"octocat": permission}), RecordingFeature()
    await on_comment(
        delivery("issue_comment", comment_payload("/deploy")), context(github, {"deploy": feature})
    )
    assert feature.calls == []
    assert "needs write access" in github.named("comment")[0][2]
    assert github.named("reaction")[-1][2] == "confused"


@pytest.mark.parametrize("permission", ["write", "maintain", "admin"])
async def test_an_unconfigured_feature_says_so(permission: str) -> None:
    github = FakeGitHub(permissions={"octocat": permission})
    await on_comment(delivery("issue_comment", comment_payload("/retrain")), context(github))
    assert "not configured" in github.named("comment")[0][2]
    assert github.named("reaction")[-1][2] == "confused"


async def test_a_slip_of_a_command_gets_did_you_mean_and_runs_nothing() -> None:
    github, feature = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    await on_comment(
        delivery("issue_comment", comment_payload("/retrian")), context(github, {"retrain": feature})
    )
    body = github.named("comment")[0][2]
    assert "`/retrian` is not a command I know; did you mean `/retrain`?" in body
    assert feature.calls == []
    assert github.named("permission") == []
    assert github.named("reaction")[-1][2] == "confused"


@pytest.mark.parametrize(
    "payload",
    [
        comment_payload("/retrain", user="orbit[bot]", user_type="Bot"),
        comment_payload("/retrain", user="dependabot[bot]"),
        comment_payload("just a comment"),
        {**comment_payload("/retrain"), "issue": {"number": 7}},  # an issue, not a pull request
        {"action": "created", "comment": {"body": "/retrain"}},  # fields missing
    ],
)
async def test_ignored_comments_cause_no_call(payload: dict[str, object]) -> None:
    github = FakeGitHub()
    await on_comment(delivery("issue_comment", payload), context(github))
    assert github.calls == []
