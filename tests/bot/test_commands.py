"""Slash commands: given this comment, GitHub got these reactions and this reply."""

import pytest

from bot.commands import on_comment, parse_commands
from bot.context import Context, Feature
from bot.events import Repo
from bot.github import GitHubApi
from tests.fakes import FakeGitHub, comment_payload, delivery, memory_inbox


def context(github: FakeGitHub, features: dict[str, Feature] | None = None) -> Context:
    return Context(github, memory_inbox(), features or {})


class RecordingFeature:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str, str]] = []

    async def __call__(self, github: GitHubApi, repo: Repo, pull_number: int, sender: str, args: str) -> str:
        self.calls.append((repo.full_name, pull_number, sender, args))
        return "training queued"


def test_commands_are_the_first_word_of_a_line() -> None:
    body = "Looks good.\n/retrain  fast please\r\nnot /deploy here\n/help"
    assert parse_commands(body) == [("retrain", "fast please"), ("help", "")]
    assert parse_commands("/ retrain") == []


async def test_help_replies_and_reacts() -> None:
    github = FakeGitHub()
    await on_comment(delivery("issue_comment", comment_payload("/help")), context(github))
    assert github.named("reaction") == [("octo-org/model", 1007, "eyes"), ("octo-org/model", 1007, "rocket")]
    ((repo, number, body),) = github.named("comment")
    assert (repo, number) == ("octo-org/model", 7)
    assert "/retrain" in body
    assert "/deploy" in body
    assert github.named("permission") == []


async def test_a_writer_hands_retrain_to_the_feature() -> None:
    github, feature = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    await on_comment(
        delivery("issue_comment", comment_payload("/retrain now")), context(github, {"retrain": feature})
    )
    assert feature.calls == [("octo-org/model", 7, "octocat", "now")]
    assert github.named("comment")[0][2] == "training queued"
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


async def test_an_unknown_command_gets_the_help() -> None:
    github = FakeGitHub()
    await on_comment(delivery("issue_comment", comment_payload("/launch")), context(github))
    body = github.named("comment")[0][2]
    assert "`/launch` is not a command" in body
    assert "/retrain" in body


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
