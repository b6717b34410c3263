"""A sweep end to end over the HTTP double of GitHub with the real client: `/retrain key=values` →
one dispatch per point with its inputs → each point's run completes with a bundle → one sweep comment,
rewritten as points finish, the best marked; a redelivered comment dispatches nothing new."""

import re
from collections.abc import Iterator
from typing import Any

import pytest

from bot.commands import on_comment
from bot.context import Context
from bot.github import GitHubAppClient
from runner.report.bundle import MetricRow
from runner.sweeps.command import Sweep
from runner.sweeps.publish import on_sweep_point_completed
from runner.sweeps.state import points_of
from runner.sweeps.table import marker
from tests.bot.test_github_client import PEM
from tests.fakes import comment_payload, delivery, memory_inbox
from tests.github_double import GitHubState, serve_github
from tests.report_fixtures import bundle_zip, report

HEAD = "a" * 40
PARAMS = "train:\n  lr: 0.002\n  epochs: 12\n"
COMMENT = 1007  # comment_payload's id for PR 7


@pytest.fixture
def state() -> GitHubState:
    github = GitHubState()
    github.reports.pulls[7] = {
        "number": 7,
        "state": "open",
        "draft": False,
        "head": {"sha": HEAD, "ref": "tune", "repo": {"full_name": "octo-org/model"}},
        "base": {"ref": "main", "repo": {"full_name": "octo-org/model", "default_branch": "main"}},
    }
    github.files[("params.yaml", HEAD)] = PARAMS
    return github


@pytest.fixture
def context(state: GitHubState) -> Iterator[Context]:
    with serve_github(state) as url:
        client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
        yield Context(client, memory_inbox(), {"retrain": Sweep()})


def sweep_comments(state: GitHubState) -> list[str]:
    return [c["body"] for c in state.reports.comments.values() if c["body"].startswith(marker(COMMENT))]


def finish(state: GitHubState, run_id: int, acc: float, conclusion: str = "success") -> dict[str, Any]:
    """Complete a dispatched run with a bundle whose val_acc is `acc`; return its event."""
    metrics = [
        MetricRow(path="m.json", key="val_acc", base=0.8, head=acc, sense="higher", verdict="better"),
        MetricRow(path="m.json", key="val_loss", base=0.2, head=0.1, sense="lower", verdict="better"),
    ]
    data = bundle_zip(report(metrics=metrics))
    state.reports.artifacts[run_id] = [
        {"id": 500 + run_id, "name": "orbit-report", "expired": False, "size_in_bytes": len(data)}
    ]
    state.reports.artifact_zips[500 + run_id] = data
    run = state.reports.runs[run_id]
    run.update(status="completed", conclusion=conclusion)
    return {
        "action": "completed",
        "workflow_run": run,
        "repository": {"full_name": "octo-org/model", "html_url": "https://github.com/octo-org/model"},
        "installation": {"id": 1},
    }


def rows(body: str) -> list[str]:
    return [line for line in body.splitlines() if "`sweep-" in line and line.startswith("|")]


async def test_a_two_point_sweep_dispatches_each_point_and_keeps_one_comment_up_to_date(
    context: Context, state: GitHubState
) -> None:
    payload = comment_payload("/retrain train.lr=0.01,0.003")
    await on_comment(delivery("issue_comment", payload), context)
    dispatched = state.reports.dispatches
    assert [d["inputs"] for d in dispatched] == [
        {"pr": "7", "sha": HEAD, "base": "main", "experiment": f"sweep-{COMMENT}-0", "set": "train.lr=0.01"},
        {"pr": "7", "sha": HEAD, "base": "main", "experiment": f"sweep-{COMMENT}-1", "set": "train.lr=0.003"},
    ]
    assert all(d["workflow"] == "train.yml" and d["ref"] == "main" for d in dispatched)
    first, second = sorted(state.reports.runs)
    assert state.reports.runs[first]["display_title"] == (
        f"orbit/train PR #7 at {HEAD} experiment sweep-{COMMENT}-0 (train.lr=0.01)"
    ), "train.yml's run-name names the point, as the bot's record does"
    assert state.reports.check_runs == {}, "a sweep queues no check run: the head's is its training's"
    reply = next(c["body"] for c in state.reports.comments.values() if "orbit:reply-to" in c["body"])
    assert "Sweeping 2 points of `aaaaaaa` over `train.lr`" in reply
    [pending] = sweep_comments(state)
    assert "0 of 2 done" in pending
    assert [row.endswith("| pending |") for row in rows(pending)] == [True, True]

    await on_comment(delivery("issue_comment", payload), context)  # the same comment, redelivered
    assert len(state.reports.dispatches) == 2, "a redelivered comment dispatches nothing new"

    state.reports.runs[second]["status"] = "in_progress"
    await on_sweep_point_completed(delivery("workflow_run", finish(state, first, 0.9)), context)
    [after_first] = sweep_comments(state)
    assert "1 of 2 done" in after_first
    done_row, running_row = rows(after_first)
    assert done_row.startswith(f"| ★ best | `sweep-{COMMENT}-0` | `0.01` | 0.9 (+0.1) | 0.1 (−0.1) | done |")
    assert running_row.endswith("| running |")

    await on_sweep_point_completed(delivery("workflow_run", finish(state, second, 0.95)), context)
    [after_both] = sweep_comments(state)
    assert "2 of 2 done" in after_both
    assert rows(after_both) == [
        f"|  | `sweep-{COMMENT}-0` | `0.01` | 0.9 (+0.1) | 0.1 (−0.1) | done |",
        f"| ★ best | `sweep-{COMMENT}-1` | `0.003` | 0.95 (+0.15) | 0.1 (−0.1) | done |",
    ]
    assert f"`/apply sweep-{COMMENT}-1`" in after_both
    plot = re.search(r"!\[Parallel coordinates of the sweep\]\((?P<url>[^)]+)\)", after_both)
    assert plot is not None
    commit, path = re.search(r"/blob/([0-9a-f]{40})/(.+)\?raw=true", plot["url"]).groups()  # type: ignore[union-attr]
    svg = state.reports.git.files(commit)[path].decode()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "train.lr" in svg

    seen = len(state.reports.requests)
    await on_sweep_point_completed(delivery("workflow_run", finish(state, second, 0.95)), context)
    assert len(state.reports.requests) == seen, "a replayed completion changes nothing"
    assert len(sweep_comments(state)) == 1


async def test_a_failed_point_is_shown_failed_and_the_others_still_rank(
    context: Context, state: GitHubState
) -> None:
    await on_comment(delivery("issue_comment", comment_payload("/retrain train.epochs=5,50")), context)
    first, second = sorted(state.reports.runs)
    event = finish(state, first, 0.9, conclusion="failure")
    state.reports.artifacts[first] = []  # no bundle: the run failed before its report
    await on_sweep_point_completed(delivery("workflow_run", event), context)
    await on_sweep_point_completed(delivery("workflow_run", finish(state, second, 0.7)), context)
    [body] = sweep_comments(state)
    failed, best = rows(body)
    assert failed.endswith("| failed: the run ended failure |")
    assert best.startswith(f"| ★ best | `sweep-{COMMENT}-1` | `50` | 0.7")
    points = context.store.read(lambda c: points_of(c, repository="octo-org/model", sweep=COMMENT))
    assert [p.status for p in points] == ["failed", "done"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "/retrain train.lr=1,2,3,4,5 train.epochs=1,2,3,4",
            "the grid would have 20 points (5 × 4); at most 16",
        ),
        ("/retrain train.lr=0.1 train.lr=0.2", "`train.lr` is given twice"),
        ("/retrain train.lr=", "`train.lr` has no values"),
        ("/retrain train.lr=$(id)", "each value is a number"),
        ("/retrain 1train=3", "a key is a params.yaml path"),
        ("/retrain train.lrr=0.1,0.2", "params.yaml at `aaaaaaa` has no `train.lrr`"),
    ],
)
async def test_a_sweep_that_is_not_a_valid_grid_dispatches_nothing_and_says_why(
    context: Context, state: GitHubState, body: str, reason: str
) -> None:
    await on_comment(delivery("issue_comment", comment_payload(body)), context)
    assert state.reports.dispatches == []
    [reply] = [c["body"] for c in state.reports.comments.values()]
    assert reason in reply
    assert "nothing was trained" in reply.lower()


async def test_a_plain_retrain_still_trains_the_head(context: Context, state: GitHubState) -> None:
    await on_comment(delivery("issue_comment", comment_payload("/retrain")), context)
    assert [d["inputs"] for d in state.reports.dispatches] == [{"pr": "7", "sha": HEAD, "base": "main"}]
    assert sweep_comments(state) == []


async def test_a_reader_cannot_sweep(context: Context, state: GitHubState) -> None:
    state.permission = "read"
    await on_comment(delivery("issue_comment", comment_payload("/retrain train.lr=0.1,0.2")), context)
    assert state.reports.dispatches == []
    assert "needs write access" in next(iter(state.reports.comments.values()))["body"]
