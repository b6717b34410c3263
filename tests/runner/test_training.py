"""Triggering training: given this pull request event, GitHub got this check run and this dispatch."""

from typing import Any

import pytest

from bot.commands import on_comment
from bot.context import Context
from bot.events import Repo
from bot.github import PullInfo, RunInfo
from bot.github.checks import CheckRunInfo
from bot.inbox import Inbox
from bot.runs import TrainingRun
from runner.config import RepoConfigError, parse_config, records_outputs_only, touches_pipeline
from runner.training import Retrain, on_pull_request
from tests.fakes import DEFAULT_HEAD, FakeGitHub, comment_payload, delivery, memory_inbox
from tests.runs import record_training

SHA, OLD = "a" * 40, "b" * 40


def pr_event(
    action: str = "synchronize", draft: bool = False, fork: bool = False, **extra: Any
) -> dict[str, Any]:
    head_repo = "someone/model" if fork else "octo-org/model"
    return {
        "action": action,
        "number": 7,
        "before": OLD,
        "pull_request": {
            "number": 7,
            "draft": draft,
            "state": "open",
            "head": {"sha": SHA, "ref": "tune", "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "repo": {"full_name": "octo-org/model", "default_branch": "main"}},
        },
        "repository": {"full_name": "octo-org/model", "default_branch": "main"},
        "installation": {"id": 42},
        **extra,
    }


def ctx(github: FakeGitHub, store: Inbox | None = None) -> Context:
    return Context(github, store or memory_inbox(), {"retrain": Retrain()})


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub(
        files=["params.yaml", "README.md"], compared=["params.yaml"], permissions={"octocat": "write"}
    )


async def test_a_pipeline_change_queues_the_check_and_dispatches_the_trusted_workflow(
    github: FakeGitHub,
) -> None:
    await on_pull_request(delivery("pull_request", pr_event()), ctx(github))
    assert github.named("create_check") == [("octo-org/model", SHA, "orbit/train", "Training queued")]
    assert github.named("dispatch") == [
        ("octo-org/model", "train.yml", "main", {"pr": "7", "sha": SHA, "base": "main"})
    ]
    assert github.named("file") == [("octo-org/model", ".github/orbit.yml", "main")]  # from the base branch


@pytest.mark.parametrize(
    "event",
    [pr_event(draft=True), pr_event(fork=True), pr_event(action="opened", pull_request={"number": 7})],
    ids=["draft", "fork", "malformed"],
)
async def test_drafts_forks_and_malformed_events_start_nothing(
    github: FakeGitHub, event: dict[str, Any]
) -> None:
    await on_pull_request(delivery("pull_request", event), ctx(github))
    assert github.named("dispatch") == []
    assert github.named("create_check") == []


async def test_changes_outside_the_pipeline_start_nothing(github: FakeGitHub) -> None:
    github.files = ["README.md", "docs/index.md"]
    await on_pull_request(delivery("pull_request", pr_event()), ctx(github))
    assert github.named("dispatch") == []


async def test_a_push_of_dvc_lock_alone_does_not_retrain(github: FakeGitHub) -> None:
    github.compared = ["dvc.lock"]
    await on_pull_request(delivery("pull_request", pr_event()), ctx(github))
    assert github.named("dispatch") == []


def own_check(conclusion: str, title: str, app: str = "orbit", check_id: int = 90) -> CheckRunInfo:
    url = f"https://github.com/octo-org/model/runs/{check_id}"
    return CheckRunInfo(check_id, "orbit/train", "completed", conclusion, title, url, app)


@pytest.mark.parametrize(
    ("before", "carried"),
    [
        ([own_check("success", "val_acc 0.96")], ("success", "val_acc 0.96")),
        (
            [own_check("failure", "Gate failed: val_acc >= 0.95 (0.9)")],
            ("failure", "Gate failed: val_acc >= 0.95 (0.9)"),
        ),
        ([own_check("success", "val_acc 0.99", app="mallory-ci")], None),  # not orbit's: carries nothing
        ([], None),
    ],
    ids=["passed", "gate failed", "another app's", "no check"],
)
async def test_a_push_of_dvc_lock_alone_carries_the_verdict_of_the_commit_before(
    github: FakeGitHub, before: list[CheckRunInfo], carried: tuple[str, str] | None
) -> None:
    github.compared = ["dvc.lock"]
    github.check_details[OLD] = before
    for _ in range(2):  # a redelivery carries nothing twice
        await on_pull_request(delivery("pull_request", pr_event()), ctx(github))
    updates = [update for _, _, update in github.named("update_check")]
    if carried is None:
        assert github.named("create_check") == [] and updates == []
        return
    assert [sha for _, sha, *_ in github.named("create_check")] == [SHA]
    [update] = updates
    assert (update.conclusion, update.title) == carried
    assert f"carries the verdict of `{OLD[:7]}`" in update.summary


async def test_repository_paths_come_from_orbit_yml(github: FakeGitHub) -> None:
    github.texts[(".github/orbit.yml", "main")] = "training:\n  paths: ['docs/**']\n"
    github.files = ["docs/index.md"]
    await on_pull_request(delivery("pull_request", pr_event(action="opened")), ctx(github))
    assert len(github.named("dispatch")) == 1


async def test_an_invalid_orbit_yml_is_reported_on_the_check_run(github: FakeGitHub) -> None:
    github.texts[(".github/orbit.yml", "main")] = "training:\n  pathz: []\n"
    await on_pull_request(delivery("pull_request", pr_event()), ctx(github))
    ((_, _check_id, update),) = github.named("update_check")
    assert update.conclusion == "failure"
    assert "training.pathz" in update.summary
    assert update.annotations[0].line == 2  # where `pathz` is written
    assert github.named("dispatch") == []


async def test_a_redelivery_for_the_same_commit_dispatches_once(github: FakeGitHub) -> None:
    for _ in range(2):
        await on_pull_request(delivery("pull_request", pr_event()), ctx(github))
    assert len(github.named("dispatch")) == 1


async def test_a_newer_push_cancels_the_older_run_and_completes_its_check(github: FakeGitHub) -> None:
    old_check = await github.create_check_run(
        Repo("octo-org", "model"), OLD, "orbit/train", "Training queued", ""
    )
    github.runs = [
        RunInfo(31, "in_progress", TrainingRun(7, OLD).title, DEFAULT_HEAD),
        RunInfo(32, "queued", TrainingRun(8, OLD).title, DEFAULT_HEAD),
        RunInfo(33, "queued", TrainingRun(7, OLD).title, DEFAULT_HEAD),  # named like orbit's, not orbit's
    ]
    store = memory_inbox()
    record_training(store, 31, pull=7, sha=OLD)
    record_training(store, 32, pull=8, sha=OLD)
    await on_pull_request(delivery("pull_request", pr_event()), ctx(github, store))
    assert github.named("cancel") == [("octo-org/model", 31)]  # PR 8's run and the stranger are left alone
    assert github.check_run_status[old_check] == "completed"
    superseded = next(u for _, i, u in github.named("update_check") if i == old_check)
    assert superseded.conclusion == "cancelled"


async def test_retrain_of_a_fork_trains_only_the_commit_the_writer_names(github: FakeGitHub) -> None:
    github.pulls[7] = PullInfo(7, SHA, "someone/model", "octo-org/model", "main", "main", False, "open")
    store = memory_inbox()
    await on_comment(delivery("issue_comment", comment_payload("/retrain")), ctx(github, store))
    assert github.named("dispatch") == [], "a fork's head may have moved since the writer read it"
    assert f"/retrain {SHA}" in github.named("comment")[0][2], "the reply names the whole head to confirm"
    confirmed = comment_payload(f"/retrain {SHA}")
    confirmed["comment"]["id"] = 2001  # a second comment
    await on_comment(delivery("issue_comment", confirmed), ctx(github, store))
    assert github.named("dispatch") == [
        ("octo-org/model", "train.yml", "main", {"pr": "7", "sha": SHA, "base": "main"})
    ]
    assert "Training `aaaaaaa`" in github.named("comment")[-1][2]


async def test_retrain_of_a_head_that_moved_trains_nothing(github: FakeGitHub) -> None:
    github.pulls[7] = PullInfo(7, "b" * 40, "someone/model", "octo-org/model", "main", "main", False, "open")
    await on_comment(delivery("issue_comment", comment_payload(f"/retrain {SHA}")), ctx(github))
    assert github.named("dispatch") == []
    assert "is now `bbbbbbb`, not `aaaaaaa`" in github.named("comment")[0][2]


async def test_the_same_retrain_comment_handled_twice_trains_once(github: FakeGitHub) -> None:
    github.pulls[7] = PullInfo(7, SHA, "octo-org/model", "octo-org/model", "main", "main", False, "open")
    store, comment = memory_inbox(), comment_payload("/retrain")
    for _ in range(2):  # the worker died after dispatching, before the delivery was marked done
        await on_comment(delivery("issue_comment", comment), ctx(github, store))
    assert len(github.named("dispatch")) == 1
    assert len(github.named("create_check")) == 1


async def test_retrain_by_a_reader_changes_nothing(github: FakeGitHub) -> None:
    github.permissions = {"octocat": "read"}
    github.pulls[7] = PullInfo(7, SHA, "someone/model", "octo-org/model", "main", "main", False, "open")
    await on_comment(delivery("issue_comment", comment_payload("/retrain")), ctx(github))
    assert github.named("dispatch") == []
    assert github.named("create_check") == []


def test_config_parsing_and_matching() -> None:
    assert parse_config(None).training.paths == ["dvc.yaml", "params.yaml", "model/**", "data/**.dvc"]
    with pytest.raises(RepoConfigError, match="not valid YAML"):
        parse_config("training: [")
    with pytest.raises(RepoConfigError, match="paths"):
        parse_config("training:\n  paths: []\n")
    config = parse_config(None)
    assert touches_pipeline(["model/train.py"], config)
    assert touches_pipeline(["data/raw.dvc"], config)
    assert not touches_pipeline(["README.md", "data/raw/x.png"], config)
    assert records_outputs_only(["dvc.lock"])
    assert not records_outputs_only(["dvc.lock", "params.yaml"])
    assert not records_outputs_only([])


async def test_retrain_of_a_fork_by_a_prefix_trains_nothing(github: FakeGitHub) -> None:
    # A commit made to share the first 12 digits of the one the writer read must not pass for it.
    github.pulls[7] = PullInfo(7, SHA, "someone/model", "octo-org/model", "main", "main", False, "open")
    await on_comment(delivery("issue_comment", comment_payload(f"/retrain {SHA[:12]}")), ctx(github))
    assert github.named("dispatch") == []
    assert f"/retrain {SHA}" in github.named("comment")[0][2]
