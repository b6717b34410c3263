"""One comment costs bounded work, and handling it twice does nothing twice.

Attacks: a comment of 2,000 command lines; prose lines that start with a slash; the same delivery
handled again after a worker died between the reply and recording the work done.
"""

from collections.abc import Iterator

import pytest

from bot.commands import near_miss, on_comment, parse_commands, reply_marker
from bot.context import CommandCall, Context, Feature
from bot.errors import TemporaryError
from bot.events import Repo
from bot.github import CommentInfo, GitHubAppClient, Reaction
from bot.github.issues import ReactionInfo
from tests.bot.test_github_client import PEM
from tests.fakes import FakeGitHub, comment_payload, delivery, memory_inbox
from tests.github_double import GitHubState, serve_github


class RecordingFeature:
    def __init__(self, outcome: str = "training queued") -> None:
        self.calls: list[CommandCall] = []
        self.outcome = outcome

    async def __call__(self, ctx: Context, call: CommandCall) -> str:
        self.calls.append(call)
        return self.outcome


def context(github: FakeGitHub, features: dict[str, Feature] | None = None) -> Context:
    return Context(github, memory_inbox(), features or {})


async def comment(github: FakeGitHub, body: str, features: dict[str, Feature] | None = None) -> None:
    await on_comment(delivery("issue_comment", comment_payload(body)), context(github, features))


def call_names(github: FakeGitHub) -> list[str]:
    return [name for name, _ in github.calls]


async def test_2000_retrain_lines_cost_one_permission_one_feature_call_one_reply() -> None:
    # Before: 2,000 permission calls, 2,000 feature runs (so 2,000 dispatches), one reply of 2,000 parts.
    github, retrain = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    await comment(github, "\n".join(["/retrain"] * 2000), {"retrain": retrain})
    assert call_names(github) == [
        "list_reactions",  # what the App reacted already
        "reaction",  # eyes
        "list_comments",  # did the App answer this comment already?
        "permission",  # once for the comment
        "comment",  # one reply
        "reaction",  # rocket
    ]
    assert len(retrain.calls) == 1
    assert retrain.calls[0].comment_id == 1007
    ((_, _, body),) = github.named("comment")
    assert body == f"{reply_marker(1007, 'rocket')}\ntraining queued"
    assert [args[2] for args in github.named("reaction")] == ["eyes", "rocket"]


async def test_each_command_of_a_long_mixed_comment_runs_once_with_its_first_lines_arguments() -> None:
    github = FakeGitHub(permissions={"octocat": "admin"})
    retrain, deploy = RecordingFeature("training queued"), RecordingFeature("deploying")
    lines = [f"/retrain run-{i}" if i % 3 == 0 else "/deploy" if i % 3 == 1 else "/help" for i in range(2000)]
    await comment(github, "\n".join(lines), {"retrain": retrain, "deploy": deploy})
    assert [c.args for c in retrain.calls] == ["run-0"]
    assert len(deploy.calls) == 1
    assert len(github.named("permission")) == 1
    ((_, _, body),) = github.named("comment")
    assert body.count("training queued") == body.count("deploying") == body.count("orbit understands") == 1


async def test_a_help_only_comment_asks_no_permission() -> None:
    github = FakeGitHub()
    await comment(github, "/help\n" * 500)
    assert github.named("permission") == []
    assert len(github.named("comment")) == 1


@pytest.mark.parametrize(
    "body",
    [
        "/usr/bin/python x.py",
        "/tmp/foo",
        "Run it like this:\n/usr/local/bin/dvc repro\n/etc/hosts\n/home/me/.cache",
        "/retrain/now",  # a path that starts like a command is still a path
        "/launch the thing",  # a slash word that is no command and close to none
        "/tmp",
        "see https://example.com/retrain or `/retrain` or please /retrain",  # not at a line's start
        "no command here at all",
    ],
)
async def test_lines_that_only_start_with_a_slash_are_not_commands_and_get_nothing(body: str) -> None:
    github, retrain = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    await comment(github, body, {"retrain": retrain})
    assert github.calls == []  # no reaction, no "unknown command" reply, no permission asked
    assert retrain.calls == []


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("retrian", "retrain"),
        ("retrainn", "retrain"),
        ("deploi", "deploy"),
        ("rolback", "rollback"),
        ("hepl", None),
    ],
)
def test_a_near_miss_is_one_or_two_letters_from_a_command(typed: str, meant: str | None) -> None:
    assert near_miss(typed) == meant


def test_words_far_from_every_command_are_no_near_miss() -> None:
    for word in ("usr", "tmp", "etc", "home", "launch", "rerun", "retry", "dev", "root", "hello"):
        assert near_miss(word) is None, word


async def test_a_near_miss_gets_one_did_you_mean_however_often_it_is_written() -> None:
    github, retrain = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    await comment(github, "/retrian\n" * 1000 + "/Retrain\n", {"retrain": retrain})
    ((_, _, body),) = github.named("comment")
    assert body.count("did you mean `/retrain`?") == 1
    assert "`/retrian`" in body
    assert retrain.calls == []
    assert github.named("permission") == []
    assert [args[2] for args in github.named("reaction")] == ["eyes", "confused"]


async def test_a_near_miss_beside_the_command_itself_is_not_corrected() -> None:
    github, retrain = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    await comment(github, "/retrian\n/retrain", {"retrain": retrain})
    assert len(retrain.calls) == 1
    assert "did you mean" not in github.named("comment")[0][2]


def test_parse_keeps_each_commands_first_line() -> None:
    parsed = parse_commands("/deploy a\n/retrain b\n/deploy c\n/retrian\n/deploi")
    assert parsed.commands == [("deploy", "a"), ("retrain", "b")]
    assert parsed.near_misses == []  # both commands are there already


async def test_the_same_delivery_handled_twice_replies_and_reacts_once() -> None:
    github, retrain = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    event, ctx = delivery("issue_comment", comment_payload("/retrain")), context(github, {"retrain": retrain})
    await on_comment(event, ctx)
    await on_comment(event, ctx)
    assert len(github.named("comment")) == 1
    assert [args[2] for args in github.named("reaction")] == ["eyes", "rocket"]
    assert len(retrain.calls) == 1  # the reply says the command ran: it does not run again


class DiesOnceAt(FakeGitHub):
    """A worker that dies at one reaction, the first time only (after the reply, before the end)."""

    dies_at: Reaction = "rocket"
    died: bool = False

    async def add_reaction(self, repo: Repo, comment_id: int, content: Reaction) -> None:
        if content == self.dies_at and not self.died:
            self.died = True
            raise TemporaryError("the worker died")
        await super().add_reaction(repo, comment_id, content)


async def test_a_worker_that_died_after_the_reply_finishes_the_reactions_and_nothing_else() -> None:
    github, retrain = DiesOnceAt(permissions={"octocat": "read"}), RecordingFeature()
    github.dies_at = "confused"
    event, ctx = delivery("issue_comment", comment_payload("/retrain")), context(github, {"retrain": retrain})
    with pytest.raises(TemporaryError):
        await on_comment(event, ctx)
    await on_comment(event, ctx)
    assert len(github.named("comment")) == 1
    assert "needs write access" in github.named("comment")[0][2]
    assert [args[2] for args in github.named("reaction")] == [
        "eyes",
        "confused",
    ]  # the outcome, from the reply
    assert len(github.named("permission")) == 1
    assert retrain.calls == []


async def test_a_worker_that_died_before_the_reply_replies_once_on_the_retry() -> None:
    github, retrain = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    event, ctx = delivery("issue_comment", comment_payload("/retrain")), context(github, {"retrain": retrain})
    original = github.create_comment
    attempts = 0

    async def dies_first(repo: Repo, number: int, body: str) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise TemporaryError("GitHub answered 502")
        return await original(repo, number, body)

    github.create_comment = dies_first  # type: ignore[method-assign]
    with pytest.raises(TemporaryError):
        await on_comment(event, ctx)
    await on_comment(event, ctx)
    assert len(github.named("comment")) == 1
    assert [args[2] for args in github.named("reaction")] == ["eyes", "rocket"]
    # The feature ran again: it is keyed by the comment (`CommandCall.trigger`), so it starts nothing twice.
    assert [call.trigger for call in retrain.calls] == ["comment:1007", "comment:1007"]


async def test_a_marker_in_somebody_elses_comment_or_not_at_the_start_counts_for_nothing() -> None:
    github, retrain = FakeGitHub(permissions={"octocat": "write"}), RecordingFeature()
    github.comments[1] = CommentInfo(1, reply_marker(1007, "rocket"), "mallory")
    github.comments[2] = CommentInfo(2, f"quoting: {reply_marker(1007, 'rocket')}", github.login)
    github.others_reactions[1007] = [ReactionInfo("eyes", "mallory"), ReactionInfo("rocket", "mallory")]
    await comment(github, "/retrain", {"retrain": retrain})
    assert len(retrain.calls) == 1
    assert len(github.named("comment")) == 1
    assert [args[2] for args in github.named("reaction")] == ["eyes", "rocket"]  # the App's own, added


@pytest.fixture
def github_double() -> Iterator[tuple[GitHubState, str]]:
    state = GitHubState()
    with serve_github(state) as url:
        yield state, url


async def test_redelivery_over_the_real_client_replies_and_reacts_once(
    github_double: tuple[GitHubState, str],
) -> None:
    state, url = github_double
    api = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    event = delivery("issue_comment", comment_payload("/help"))
    for _ in range(2):
        await on_comment(event, Context(api, memory_inbox(), {}))
    assert len(state.reports.comments) == 1
    (reply,) = state.reports.comments.values()
    assert reply["body"].startswith(reply_marker(1007, "rocket"))
    assert sorted(r["content"] for r in state.reactions) == ["eyes", "rocket"]
    assert await api.comment_reactions(Repo("octo-org", "model"), 1007) == [
        ReactionInfo("eyes", "orbit[bot]"),
        ReactionInfo("rocket", "orbit[bot]"),
    ]
