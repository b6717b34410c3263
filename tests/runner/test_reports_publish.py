"""Publishing a finished run over HTTP doubles of GitHub with the real client: the bundle artifact,
the assets branch through the Git Data API, one sticky comment, the check run, failures and limits."""

import re
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from bot.context import Context
from bot.errors import TemporaryError
from bot.github import GitHubAppClient
from bot.runs import run_effects
from runner.report.assets import BRANCH, KEEP_RUNS
from runner.report.publish import on_training_run_completed
from runner.report.sticky import MARKER
from tests.bot.test_github_client import PEM
from tests.fakes import delivery, memory_inbox
from tests.github_double import GitHubState, serve_github
from tests.report_fixtures import SHA, bundle_zip, report, run_payload
from tests.runs import record_training

HTML = "https://github.com/octo-org/model"


@pytest.fixture
def state() -> GitHubState:
    github = GitHubState()
    github.reports.check_runs[7000] = {"id": 7000, "name": "orbit/train", "head_sha": SHA, "status": "queued"}
    return github


@pytest.fixture
def context(state: GitHubState) -> Iterator[Context]:
    with serve_github(state) as url:
        client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
        yield Context(client, memory_inbox(), {})


def give_artifact(state: GitHubState, run_id: int, data: bytes) -> None:
    artifact_id = 500 + run_id
    state.reports.artifacts[run_id] = [
        {"id": artifact_id, "name": "orbit-report", "expired": False, "size_in_bytes": len(data)}
    ]
    state.reports.artifact_zips[artifact_id] = data


async def finish(context: Context, state: GitHubState, run_id: int, conclusion: str = "success") -> None:
    """Deliver the completion of training run `run_id`, which orbit dispatched (and so recorded)."""
    record_training(context.store, run_id, sha=SHA)
    await on_training_run_completed(
        delivery("workflow_run", run_payload(run_id, conclusion=conclusion)), context
    )


def the_comment(state: GitHubState) -> str:
    comments = [c for c in state.reports.comments.values() if c["issue"] == 7]
    assert len(comments) == 1, "one sticky comment per PR"
    body: str = comments[0]["body"]
    return body


async def test_a_successful_run_publishes_plots_comment_and_check(
    context: Context, state: GitHubState
) -> None:
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    git = state.reports.git
    head = git.refs[f"heads/{BRANCH}"]
    files = git.files(head)
    assert set(files) == {
        "README.md",
        "pr-7/run-100/loss.png",
        "pr-7/run-100/confusion.png",
        "pr-7/run-100/predictions.png",
    }
    assert git.commits[head]["parents"] == [], "an orphan branch: no history shared with the code"
    body = the_comment(state)
    assert body.startswith(MARKER)
    assert f"![Loss]({HTML}/blob/{head}/pr-7/run-100/loss.png?raw=true)" in body
    assert "| val\\_acc | 0.8 | 0.9 | ▲ +0.1 |" in body
    assert "| train.lr | `0.002` | `0.003` |" in body
    check = state.reports.check_runs[7000]
    assert (check["status"], check["conclusion"]) == ("completed", "success")
    assert check["output"]["title"] == "val_acc 0.9 (+0.1)"
    assert "| val\\_acc | 0.8 | 0.9 |" in check["output"]["summary"]
    assert check["details_url"] == f"{HTML}/actions/runs/100"
    assert state.reports.storage_auth == [None], "the token is not sent to artifact storage"


async def test_a_replayed_event_changes_nothing(context: Context, state: GitHubState) -> None:
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    first, seen = the_comment(state), len(state.reports.requests)
    state.reports.check_runs[7000]["status"] = "in_progress"  # as if someone reopened it
    await finish(context, state, 100)  # the same event again, under a new delivery id
    assert the_comment(state) == first
    assert len(state.reports.requests) == seen, "no GitHub write, no plot commit: the report is out already"
    assert state.reports.check_runs[7000]["status"] == "in_progress"


async def test_a_retry_after_a_crash_updates_the_same_comment(context: Context, state: GitHubState) -> None:
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    first = the_comment(state)
    context.store.write(lambda connection: connection.execute(run_effects.delete()))  # died before noting it
    state.reports.check_runs[7000]["status"] = "in_progress"
    await finish(context, state, 100)
    body = the_comment(state)
    assert body.count("<!-- orbit:run 100 -->") == 1
    assert re.sub(r"blob/[0-9a-f]{40}", "", body) == re.sub(r"blob/[0-9a-f]{40}", "", first)
    assert [r[1:] for r in state.reports.requests if r[2].startswith("comment")] == [
        ("POST", "comments"),
        ("PATCH", "comment"),
    ]


async def test_later_runs_go_on_top_and_older_ones_fold(context: Context, state: GitHubState) -> None:
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    first_head = state.reports.git.refs[f"heads/{BRANCH}"]
    give_artifact(state, 101, bundle_zip(report(metrics=[])))
    await finish(context, state, 101)
    body = the_comment(state)
    assert body.index("<!-- orbit:run 101 -->") < body.index("<!-- orbit:run 100 -->")
    folded = body[body.index("### Earlier runs (1)") :]
    assert folded.startswith(
        "### Earlier runs (1)\n\n<details><summary>Training report for c0ffeea against main"
    )
    assert "<!-- orbit:run 100 -->" in folded
    git = state.reports.git
    head = git.refs[f"heads/{BRANCH}"]
    assert git.commits[head]["parents"] == [first_head], "the branch moves forward, never forced"
    assert {p.split("/")[1] for p in git.files(head) if p.startswith("pr-7/")} == {"run-100", "run-101"}


async def test_old_runs_are_pruned_from_the_branch_but_their_links_still_resolve(
    context: Context, state: GitHubState
) -> None:
    commits = []
    for run_id in range(200, 200 + KEEP_RUNS + 2):
        give_artifact(state, run_id, bundle_zip())
        await finish(context, state, run_id)
        commits.append(state.reports.git.refs[f"heads/{BRANCH}"])
    files = state.reports.git.files(commits[-1])
    assert {p.split("/")[1] for p in files if p.startswith("pr-7/")} == {
        f"run-{r}" for r in range(202, 200 + KEEP_RUNS + 2)
    }
    assert "pr-7/run-200/loss.png" in state.reports.git.files(commits[0]), "pinned links keep working"


async def test_a_concurrent_publisher_makes_the_write_start_over(
    context: Context, state: GitHubState
) -> None:
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    state.reports.concurrent_push = True
    give_artifact(state, 101, bundle_zip())
    await finish(context, state, 101)
    git = state.reports.git
    head = git.refs[f"heads/{BRANCH}"]
    assert git.commits[git.commits[head]["parents"][0]]["message"] == "other", "built on the other commit"
    assert "pr-7/run-101/loss.png" in git.files(head)


async def test_a_github_5xx_is_retried_and_loses_nothing(context: Context, state: GitHubState) -> None:
    give_artifact(state, 100, bundle_zip())
    state.reports.fail_next["PATCH check-runs"] = 502
    with pytest.raises(TemporaryError, match="502"):
        await finish(context, state, 100)
    await finish(context, state, 100)  # the inbox's retry
    assert state.reports.check_runs[7000]["conclusion"] == "success"
    assert the_comment(state).count("<!-- orbit:run 100 -->") == 1


async def test_a_failed_stage_reports_failure_with_its_log(context: Context, state: GitHubState) -> None:
    failed = report(
        stages={"ran": ["prepare"], "cached": [], "failed": "train"},
        log_tail=["RuntimeError: CUDA out of memory"],
        metrics=[],
        curves=[],
        confusions=[],
        images=[],
    )
    give_artifact(state, 100, bundle_zip(failed))
    await finish(context, state, 100, conclusion="failure")
    body = the_comment(state)
    assert "### Training failed at stage `train`" in body
    assert "RuntimeError: CUDA out of memory" in body
    check = state.reports.check_runs[7000]
    assert (check["conclusion"], check["output"]["title"]) == ("failure", "Stage train failed")
    assert BRANCH not in str(state.reports.git.refs), "no images, no commit"


async def test_a_run_that_failed_before_its_report_gets_the_failing_step_and_log(
    context: Context, state: GitHubState
) -> None:
    state.reports.jobs[100] = [
        {
            "id": 9,
            "run_id": 100,
            "name": "train PR #7",
            "status": "completed",
            "conclusion": "failure",
            "html_url": f"{HTML}/actions/runs/100/job/9",
            "steps": [
                {"number": 1, "name": "Fetch the pull request (forks included)", "conclusion": "success"},
                {"number": 5, "name": "Pull data and cached outputs", "conclusion": "failure"},
                {"number": 6, "name": "Train", "conclusion": "skipped"},
            ],
        }
    ]
    state.reports.logs[9] = "\n".join(
        [
            "2026-11-27T10:00:00.0000000Z ##[group]Run dvc pull --allow-missing",
            "2026-11-27T10:00:01.0000000Z Collecting                                 |0.00 [00:00, ?entry/s]",
            "2026-11-27T10:00:02.0000000Z using token ghs_abcdefghijklmnopqrstuvwxyz0123456789",
            "2026-11-27T10:00:03.0000000Z ERROR: failed to pull data from the cloud - 403 Forbidden",
            "2026-11-27T10:00:03.1000000Z ##[error]Process completed with exit code 1.",
            "2026-11-27T10:00:04.0000000Z Post job cleanup.",
        ]
    )
    await finish(context, state, 100, conclusion="failure")
    body = the_comment(state)
    assert "failed at step “Pull data and cached outputs”" in body
    assert "ERROR: failed to pull data from the cloud - 403 Forbidden" in body
    assert "Post job cleanup" not in body
    assert "ghs_abcdefghijklmnopqrstuvwxyz0123456789" not in body and "using token ***" in body
    assert state.reports.storage_auth == [None]
    assert state.reports.check_runs[7000]["conclusion"] == "failure"


async def test_a_superseded_cancelled_run_changes_nothing(context: Context, state: GitHubState) -> None:
    state.reports.check_runs[7000].update(status="completed", conclusion="cancelled")  # done by supersede
    await finish(context, state, 100, conclusion="cancelled")
    assert state.reports.comments == {}
    assert state.reports.check_runs[7000]["conclusion"] == "cancelled"


async def test_a_cancelled_run_is_reported_as_cancelled(context: Context, state: GitHubState) -> None:
    await finish(context, state, 100, conclusion="cancelled")
    assert "was cancelled" in the_comment(state)
    assert state.reports.check_runs[7000]["conclusion"] == "cancelled"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not a zip", "the artifact is not a zip archive"),
        (bundle_zip(files={"report.json": b"{}"}), "report.json is not a valid report"),
        (
            bundle_zip(files={"loss.png": b"<svg onload=alert(1)>"}),
            "loss.png is not a PNG, JPEG or GIF image",
        ),
    ],
)
async def test_a_bad_bundle_is_said_and_the_check_still_completes(
    context: Context, state: GitHubState, data: bytes, reason: str
) -> None:
    give_artifact(state, 100, data)
    await finish(context, state, 100)
    body = the_comment(state)
    assert "could not be read" in body and reason in body
    assert state.reports.check_runs[7000]["status"] == "completed"
    assert BRANCH not in str(state.reports.git.refs)


async def test_the_comment_stays_under_githubs_limit(context: Context, state: GitHubState) -> None:
    many = report(
        metrics=[
            {"path": "m.json", "key": f"recall_c{i}", "base": 0.5, "head": 0.6, "verdict": "better"}
            for i in range(1500)
        ]
    )
    for run_id in (100, 101, 102):
        give_artifact(state, run_id, bundle_zip(many))
        await finish(context, state, run_id)
    body = the_comment(state)
    assert len(body) <= 65_536
    assert "<!-- orbit:run 102 -->" in body
    newest = body.split("<!-- orbit:run 102 -->")[1].split("<!-- orbit:end 102 -->")[0]
    assert newest.count("| recall\\_c") == 200, "at most 200 rows a table"
    assert "1,300 more rows left out" in newest


async def test_other_workflow_runs_are_ignored(context: Context, state: GitHubState) -> None:
    payload = run_payload(100)
    payload["workflow_run"]["display_title"] = "Bump numpy from 1.26 to 2.0"
    await on_training_run_completed(delivery("workflow_run", payload), context)
    assert state.reports.requests == []
    assert state.reports.check_runs[7000]["status"] == "queued"


@pytest.mark.parametrize(
    "author",
    [
        {"login": "other-ci[bot]", "type": "Bot"},  # another App quoting orbit's marker
        {"login": "mallory", "type": "User"},  # a person pasting it
    ],
)
async def test_the_sticky_comment_is_only_ever_orbits_own(
    context: Context, state: GitHubState, author: dict[str, str]
) -> None:
    state.reports.comments[1] = {"id": 1, "issue": 7, "body": f"{MARKER}\nnot orbit's", "user": author}
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    assert state.reports.comments[1]["body"] == f"{MARKER}\nnot orbit's", (
        "another author's comment is left alone"
    )
    mine = [c for c in state.reports.comments.values() if c["user"]["login"] == "orbit[bot]"]
    assert len(mine) == 1 and "<!-- orbit:run 100 -->" in mine[0]["body"]
    give_artifact(state, 101, bundle_zip())
    await finish(context, state, 101)  # the next run finds orbit's own comment by its author
    assert [c["id"] for c in state.reports.comments.values() if c["user"]["login"] == "orbit[bot]"] == [
        mine[0]["id"]
    ]


def untrusted(reason: str) -> float:
    return REGISTRY.get_sample_value("orbit_untrusted_runs_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, "not dispatched by orbit"),  # a fork's own workflow, titled like orbit's run
        ({"path": ".github/workflows/evil.yml"}, "another workflow file"),
        ({"event": "pull_request"}, "not started by a dispatch"),
        ({"head_repository": {"full_name": "mallory/model"}}, "runs code of another repository"),
        ({"head_sha": "e" * 40}, "not the commit orbit dispatched"),
    ],
)
async def test_a_forged_training_run_publishes_nothing(
    context: Context, state: GitHubState, change: dict[str, object], reason: str
) -> None:
    if change:  # the id is one orbit recorded, but another field gives the forgery away
        record_training(context.store, 100, sha=SHA)
    give_artifact(state, 100, bundle_zip())
    payload = run_payload(100)
    payload["workflow_run"].update(change)
    before = untrusted(reason)
    await on_training_run_completed(delivery("workflow_run", payload), context)
    assert state.reports.comments == {}, "no report comment"
    assert state.reports.check_runs[7000]["status"] == "queued", "the check run is untouched"
    assert f"heads/{BRANCH}" not in state.reports.git.refs, "no plot committed"
    assert untrusted(reason) == before + 1


async def test_an_artifact_over_the_limit_is_not_downloaded_and_said(
    context: Context, state: GitHubState
) -> None:
    give_artifact(state, 100, bundle_zip())
    state.reports.artifacts[100][0]["size_in_bytes"] = (
        40 * 1024 * 1024
    )  # what the run claims to have uploaded
    await finish(context, state, 100)
    assert "could not be read" in the_comment(state)
    assert state.reports.storage_auth == [], "nothing was fetched from artifact storage"
    assert state.reports.check_runs[7000]["status"] == "completed"
