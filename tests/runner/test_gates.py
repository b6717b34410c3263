"""Metric gates: given this report and these gates, this outcome; through GitHub's double, this check run."""

from typing import Any

import pytest

from bot.context import Context
from bot.events import Repo
from bot.github.checks import Annotation, CheckUpdate
from bot.repo_config import GatesConfig, parse_config
from runner.report.bundle import Report
from runner.report.gates import GateVerdict, evaluate
from tests.github_double import GitHubState
from tests.report_fixtures import SHA, bundle_zip, report
from tests.runner.test_reports_publish import context, finish, give_artifact, state  # noqa: F401 - fixtures

GATES = """\
training:
  workflow: train.yml
gates:
  thresholds:
    - val_acc >= 0.95
    - val_loss < 0.5
  no_significant_regression: [val_acc]
"""


def significance(key: str = "val_acc", verdict: str = "worse", delta: float = -0.021) -> dict[str, Any]:
    return {
        "key": key,
        "base": 0.9,
        "head": 0.9 + delta,
        "delta": delta,
        "low": delta - 0.01,
        "high": delta + 0.01,
        "p_value": 0.01,
        "verdict": verdict,
    }


def judged(**changes: Any) -> Report:
    return report(**changes)


@pytest.mark.parametrize(
    ("gate", "passed"),
    [
        ("val_acc >= 0.9", True),
        ("val_acc > 0.9", False),
        ("val_acc <= 0.9", True),
        ("val_acc < 0.9", False),
        ("val_acc == 0.9", True),
        ("val_loss<0.2", True),
        ("  val_loss   >=  .2 ", False),
    ],
)
def test_a_threshold_compares_the_heads_metric(gate: str, passed: bool) -> None:
    [outcome] = evaluate(GatesConfig(thresholds=[gate]), report())
    assert outcome.passed is passed
    metric = "val_acc" if "acc" in gate else "val_loss"
    assert outcome.detail == f"{metric} is {'0.9' if 'acc' in gate else '0.1'}"


def test_a_nested_metric_is_matched_by_its_whole_key() -> None:
    rows = [{"path": "m.json", "key": "per_class.star.f1", "base": 0.7, "head": 0.8}]
    [outcome] = evaluate(GatesConfig(thresholds=["per_class.star.f1 >= 0.75"]), report(metrics=rows))
    assert (outcome.passed, outcome.detail) == (True, "per_class.star.f1 is 0.8")


def test_a_threshold_on_a_metric_the_report_lacks_fails_as_missing() -> None:
    rows = [{"path": "m.json", "key": "val_f1", "base": 0.7, "head": None}]
    [outcome] = evaluate(GatesConfig(thresholds=["val_f1 >= 0.5"]), report(metrics=rows))
    assert (outcome.passed, outcome.detail) == (False, "metric missing")


def test_a_significant_regression_fails_and_noise_passes() -> None:
    gates = GatesConfig(no_significant_regression=["val_acc", "val_f1"])
    rows = [significance("val_acc", "worse"), significance("val_f1", "no significant change", -0.004)]
    worse, noise = evaluate(gates, judged(significance=rows))
    assert (worse.passed, worse.detail) == (False, "significantly worse: -0.021, 95 % CI -0.031 … -0.011")
    assert (noise.passed, noise.detail) == (True, "no significant change: -0.004, 95 % CI -0.014 … 0.006")


def test_a_report_that_cannot_judge_passes_with_its_note() -> None:
    gates = GatesConfig(no_significant_regression=["val_acc"])
    [outcome] = evaluate(gates, judged(significance_note="the base has no predictions"))
    assert (outcome.passed, outcome.detail) == (
        True,
        "cannot judge significance: the base has no predictions",
    )


def test_the_verdict_names_the_failed_gates_in_its_title_and_annotates_their_lines() -> None:
    config = parse_config(GATES)
    verdict = GateVerdict(evaluate(config.gates, judged(significance=[significance()])))
    assert [o.gate for o in verdict.failed] == ["val_acc >= 0.95", "no_significant_regression: val_acc"]
    assert verdict.title == (
        "Gate failed: val_acc >= 0.95 (val_acc is 0.9); "
        "no_significant_regression: val_acc (significantly worse: -0.021, 95 % CI -0.031 … -0.011)"
    )
    assert [(a.path, a.line, a.level) for a in verdict.annotations(GATES)] == [
        (".github/orbit.yml", 5, "failure"),
        (".github/orbit.yml", 7, "failure"),
    ]
    assert verdict.summary().startswith(
        "### FAILED: 2 of 3 gates\n\n- **FAILED** `val_acc >= 0.95`: val\\_acc is 0.9"
    )


# Through GitHub's double, with the real client: the check run of a finished training run.


def with_pull(github: GitHubState, default_text: str | None, head_text: str | None = None) -> None:
    """A PR into `release` (not the default branch, `main`); the gates come from `main`."""
    github.reports.pulls[7] = {
        "number": 7,
        "state": "open",
        "head": {"sha": SHA, "repo": {"full_name": "octo-org/model"}},
        "base": {"ref": "release", "repo": {"full_name": "octo-org/model", "default_branch": "main"}},
    }
    if default_text is not None:
        github.files[(".github/orbit.yml", "main")] = default_text
    github.files[(".github/orbit.yml", SHA)] = head_text if head_text is not None else (default_text or "")


async def test_a_failing_gate_fails_the_check_with_an_annotation_on_its_line(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    with_pull(state, GATES)
    give_artifact(state, 100, bundle_zip(judged(significance=[significance(verdict="better", delta=0.1)])))
    await finish(context, state, 100)
    check = state.reports.check_runs[7000]
    assert (check["status"], check["conclusion"]) == ("completed", "failure")
    assert check["output"]["title"] == "Gate failed: val_acc >= 0.95 (val_acc is 0.9)"
    assert check["output"]["summary"].startswith("### FAILED: 1 of 3 gates\n\n- **FAILED** `val_acc >= 0.95`")
    assert "| val\\_acc | 0.8 | 0.9 |" in check["output"]["summary"], "the report follows the gates"
    [annotation] = state.annotations[7000]
    assert annotation == {
        "path": ".github/orbit.yml",
        "start_line": 5,
        "end_line": 5,
        "annotation_level": "failure",
        "message": "val_acc >= 0.95: val_acc is 0.9",
        "title": "Gate failed",
    }


async def test_passing_gates_succeed_and_the_title_gives_the_verdict(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    with_pull(state, GATES.replace("0.95", "0.85"))
    give_artifact(
        state, 100, bundle_zip(judged(significance=[significance(verdict="no significant change")]))
    )
    await finish(context, state, 100)
    check = state.reports.check_runs[7000]
    assert check["conclusion"] == "success"
    assert check["output"]["title"] == "val_acc 0.9 (+0.1, no significant change)"
    assert check["output"]["summary"].startswith("### Passed: all 3 gates")
    assert state.annotations.get(7000, []) == []


async def test_a_pull_request_cannot_loosen_its_own_gates(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    with_pull(state, GATES, head_text="gates:\n  thresholds: [val_acc >= 0.1]\n")
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    check = state.reports.check_runs[7000]
    assert check["conclusion"] == "failure"
    assert check["output"]["title"].startswith("Gate failed: val_acc >= 0.95")


async def test_a_base_branch_the_author_made_does_not_choose_the_gates(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    """The attack: open the PR against a branch without gates, pass, then retarget it at main."""
    with_pull(state, GATES)
    state.files[(".github/orbit.yml", "release")] = "deploy:\n  production: on_merge\n"  # no gates
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    check = state.reports.check_runs[7000]
    assert check["conclusion"] == "failure"
    assert check["output"]["title"].startswith("Gate failed: val_acc >= 0.95")


async def test_an_invalid_default_branch_config_fails_the_check_with_the_line_and_reason(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    with_pull(state, GATES.replace("val_loss < 0.5", "val_loss << 0.5"))
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    check = state.reports.check_runs[7000]
    assert (check["conclusion"], check["output"]["title"]) == ("failure", "Invalid orbit configuration")
    reason = "'val_loss << 0.5' is not a comparison like 'val_acc >= 0.90'"
    assert f"\n.github/orbit.yml line 6: gates.thresholds[1]: {reason}\n" in check["output"]["summary"]
    [annotation] = state.annotations[7000]
    assert (annotation["start_line"], annotation["annotation_level"]) == (6, "failure")


async def test_an_invalid_config_in_the_pull_request_is_reported_at_its_line(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    with_pull(state, None, head_text="deploy:\n  production: always\n")
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    check = state.reports.check_runs[7000]
    assert check["conclusion"] == "failure"
    assert check["output"]["title"] == "Invalid orbit configuration in this pull request"
    assert "`.github/orbit.yml` in this pull request is invalid" in check["output"]["summary"]
    [annotation] = state.annotations[7000]
    assert annotation["start_line"] == 2
    assert "deploy.production: 'always' is not one of ['on_merge', 'on_command']" in annotation["message"]


async def test_without_gates_the_check_follows_the_run(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    with_pull(state, None)
    give_artifact(state, 100, bundle_zip())
    await finish(context, state, 100)
    check = state.reports.check_runs[7000]
    assert (check["conclusion"], check["output"]["title"]) == ("success", "val_acc 0.9 (+0.1)")
    assert not check["output"]["summary"].startswith("###  ")


async def test_annotations_go_fifty_a_request_and_all_arrive(
    context: Context,  # noqa: F811 - the fixture
    state: GitHubState,  # noqa: F811 - the fixture
) -> None:
    """GitHub refuses more than 50 annotations in one request (the double too); the rest follow."""
    notes = tuple(Annotation(".github/orbit.yml", i, f"problem {i}") for i in range(1, 121))
    update = CheckUpdate(conclusion="failure", title="t", summary="s", annotations=notes)
    await context.github.update_check_run(Repo("octo-org", "model"), 7000, update)
    assert [a["start_line"] for a in state.annotations[7000]] == list(range(1, 121))
    assert state.reports.check_runs[7000]["conclusion"] == "failure"
    patches = [r for r in state.reports.requests if r[1:] == ("PATCH", "check-runs")]
    assert len(patches) == 3
