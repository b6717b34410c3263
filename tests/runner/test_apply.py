"""`/apply <experiment>` over the HTTP double with the real client: the committed params.yaml keeps
every other line, a second `/apply` commits nothing, forks and unknown points are refused."""

import functools
from collections.abc import Iterator

import pytest

from bot.commands import on_comment
from bot.context import Context
from bot.github import GitHubAppClient
from runner.sweeps.apply import Apply
from runner.sweeps.params_edit import ParamsEditError, set_values
from runner.sweeps.state import SweepPoint, declare
from tests.bot.test_github_client import PEM
from tests.fakes import comment_payload, delivery, memory_inbox
from tests.github_double import GitHubState, serve_github

PARAMS = """# parameters of the pipeline
generate:
  seed: 42
train:
  seed: 77
  lr: 0.002  # tuned by hand
  epochs: 12
  image_size: [64, 64]
"""
APPLIED = PARAMS.replace("lr: 0.002  #", "lr: 0.01  #").replace("epochs: 12", "epochs: 20")
POINT = SweepPoint(1001, 3, 7, "c" * 40, "sweep-1001-3", ("train.lr=0.01", "train.epochs=20"))


def seed_branch(state: GitHubState, text: str) -> str:
    """Put a commit holding params.yaml at the head of branch `tune`; return its SHA."""
    git = state.reports.git
    blob = "b1" + str(len(git.blobs)).rjust(38, "0")
    git.blobs[blob] = text.encode()
    readme = "e" * 40
    git.blobs[readme] = b"# model\n"
    tree = git.put_tree(
        [
            {"path": "params.yaml", "mode": "100644", "type": "blob", "sha": blob},
            {"path": "README.md", "mode": "100644", "type": "blob", "sha": readme},
        ]
    )
    head = "c" * 40
    git.commits[head] = {"tree": tree, "parents": [], "message": "start"}
    git.refs["heads/tune"] = head
    state.files[("params.yaml", head)] = text
    return head


def pull(head: str, fork: bool = False) -> dict[str, object]:
    return {
        "number": 7,
        "state": "open",
        "draft": False,
        "head": {
            "sha": head,
            "ref": "tune",
            "repo": {"full_name": "someone/model" if fork else "octo-org/model"},
        },
        "base": {"ref": "main", "repo": {"full_name": "octo-org/model", "default_branch": "main"}},
    }


@pytest.fixture
def state() -> GitHubState:
    github = GitHubState()
    github.reports.pulls[7] = pull(seed_branch(github, PARAMS))
    return github


@pytest.fixture
def context(state: GitHubState) -> Iterator[Context]:
    with serve_github(state) as url:
        client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
        store = memory_inbox()
        store.write(functools.partial(declare, repository="octo-org/model", points=[POINT]))
        yield Context(client, store, {"apply": Apply()})


def replies(state: GitHubState) -> list[str]:
    return [c["body"].split("\n", 1)[1] for c in state.reports.comments.values()]


async def test_apply_commits_the_points_values_and_a_second_apply_commits_nothing(
    context: Context, state: GitHubState
) -> None:
    git = state.reports.git
    await on_comment(delivery("issue_comment", comment_payload("/apply sweep-1001-3")), context)
    head = git.refs["heads/tune"]
    assert head != "c" * 40
    assert git.files(head) == {"params.yaml": APPLIED.encode(), "README.md": b"# model\n"}
    assert git.commits[head]["parents"] == ["c" * 40], "on top of the head the writer saw"
    assert git.commits[head]["message"].startswith("Apply sweep point sweep-1001-3 to params.yaml")
    assert f"Committed `{head[:7]}` to `tune`" in replies(state)[0]

    state.reports.pulls[7] = pull(head)
    state.files[("params.yaml", head)] = APPLIED
    again = comment_payload("/apply sweep-1001-3")
    again["comment"]["id"] = 2002
    await on_comment(delivery("issue_comment", again), context)
    assert git.refs["heads/tune"] == head, "nothing committed"
    assert "already has `train.lr=0.01`, `train.epochs=20`; nothing was committed" in replies(state)[1]


async def test_apply_on_a_fork_commits_nothing(context: Context, state: GitHubState) -> None:
    state.reports.pulls[7] = pull("c" * 40, fork=True)
    await on_comment(delivery("issue_comment", comment_payload("/apply sweep-1001-3")), context)
    assert state.reports.git.refs["heads/tune"] == "c" * 40
    assert "comes from a fork" in replies(state)[0]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("/apply sweep-999-0", "No sweep of PR #7 ran `sweep-999-0`"),
        ("/apply", "`/apply <experiment>` names a point"),
        ("/apply ../../etc", "`/apply <experiment>` names a point"),
    ],
)
async def test_apply_of_an_unknown_point_commits_nothing(
    context: Context, state: GitHubState, body: str, reason: str
) -> None:
    await on_comment(delivery("issue_comment", comment_payload(body)), context)
    assert state.reports.git.refs["heads/tune"] == "c" * 40
    assert reason in replies(state)[0]


async def test_apply_by_a_reader_commits_nothing(context: Context, state: GitHubState) -> None:
    state.permission = "read"
    await on_comment(delivery("issue_comment", comment_payload("/apply sweep-1001-3")), context)
    assert state.reports.git.refs["heads/tune"] == "c" * 40
    assert "needs write access" in replies(state)[0]


async def test_a_branch_that_moved_meanwhile_is_not_overwritten(context: Context, state: GitHubState) -> None:
    state.reports.concurrent_push = True
    await on_comment(delivery("issue_comment", comment_payload("/apply sweep-1001-3")), context)
    moved = state.reports.git.refs["heads/tune"]
    assert state.reports.git.commits[moved]["message"] == "other", "the other push is kept"
    assert "moved while committing; nothing was committed" in replies(state)[0]


def test_the_edit_keeps_comments_order_and_layout() -> None:
    assert set_values(PARAMS, (("train.lr", "0.01"), ("train.epochs", "20"))) == APPLIED
    crlf = PARAMS.replace("\n", "\r\n")
    assert set_values(crlf, (("train.seed", "1"),)) == crlf.replace("  seed: 77", "  seed: 1")
    assert set_values(PARAMS, (("generate.seed", "7"),)).count("seed: 77") == 1, "only generate's seed"


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ((("train.momentum", "0.9"),), "has no `train.momentum`"),
        ((("train.image_size", "32"),), "has no `train.image_size`"),  # a flow list: not a plain value
        ((("train", "3"),), "has no `train`"),
    ],
)
def test_values_that_cannot_be_set_by_a_plain_edit_are_refused(
    settings: tuple[tuple[str, str], ...], reason: str
) -> None:
    with pytest.raises(ParamsEditError, match=reason):
        set_values(PARAMS, settings)


def test_an_edit_that_would_not_read_back_as_exactly_the_values_is_refused() -> None:
    twice = "train:\n  lr: 0.1\n  lr: 0.2\n"  # YAML reads the last; a text edit finds the first
    with pytest.raises(ParamsEditError, match="would change more than"):
        set_values(twice, (("train.lr", "0.3"),))
    with pytest.raises(ParamsEditError, match="not valid YAML"):
        set_values("train: [\n", (("train.lr", "1"),))


async def test_a_point_swept_on_an_older_head_is_not_applied_to_a_newer_one(
    context: Context, state: GitHubState
) -> None:
    newer = "d" * 40  # the author pushed after the sweep: its values were never trained on this code
    state.reports.git.commits[newer] = state.reports.git.commits["c" * 40]
    state.reports.git.refs["heads/tune"] = newer
    state.files[("params.yaml", newer)] = PARAMS
    state.reports.pulls[7] = pull(newer)
    await on_comment(delivery("issue_comment", comment_payload("/apply sweep-1001-3")), context)
    assert state.reports.git.refs["heads/tune"] == newer, "nothing committed"
    assert "was trained on `ccccccc` and the head is now `ddddddd`" in replies(state)[0]
