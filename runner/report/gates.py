"""Metric gates: what a training run must show, from the base branch's `.github/orbit.yml`.

A threshold (`val_acc >= 0.90`) holds on the head's metric of that key; a metric the report lacks
fails it. `no_significant_regression` fails a metric whose change the report judges significantly
worse; where the report cannot judge (no predictions on the base), the gate passes with a note.
The check run's conclusion, title, summary and annotations follow (`GateVerdict`).
"""

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.config_lines import line_of
from bot.events import Repo
from bot.gate_contract import gate_failed_title
from bot.github.checks import Annotation, CheckUpdate
from bot.github.pulls import Pulls
from bot.repo_config import (
    CONFIG_PATH,
    GatesConfig,
    RepoConfig,
    RepoConfigError,
    parse_config,
    threshold_parts,
)
from runner.checks import INVALID_CONFIG, config_annotations, config_summary
from runner.report import inert
from runner.report.bundle import MetricRow, Report, Significance
from runner.report.text import number

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
REGRESSION = "no_significant_regression"


@dataclass(frozen=True)
class GateOutcome:
    """One gate and how the report fared: `detail` says why (report text in it is untrusted)."""

    gate: str  # as `.github/orbit.yml` writes it: "val_acc >= 0.90", "no_significant_regression: val_f1"
    passed: bool
    detail: str
    path: tuple[str | int, ...]  # where `.github/orbit.yml` holds it, for the annotation's line

    @property
    def short(self) -> str:
        """Return the gate and its finding in one line, for a check run title."""
        return f"{self.gate} ({self.detail})"


def evaluate(gates: GatesConfig, report: Report) -> list[GateOutcome]:
    """Return the outcome of every gate on the report, thresholds first, each in the file's order."""
    outcomes = [
        _threshold(gate, report.metrics, ("gates", "thresholds", i))
        for i, gate in enumerate(gates.thresholds)
    ]
    for i, key in enumerate(gates.no_significant_regression):
        outcomes.append(_regression(key, report, ("gates", REGRESSION, i)))
    return outcomes


def _threshold(gate: str, metrics: list[MetricRow], path: tuple[str | int, ...]) -> GateOutcome:
    key, op, limit = threshold_parts(gate)
    value = next((row.head for row in metrics if row.key == key and row.head is not None), None)
    if value is None:
        return GateOutcome(gate, False, "metric missing", path)
    passed = not math.isnan(value) and COMPARE[op](value, limit)
    return GateOutcome(gate, passed, f"{key} is {number(value)}", path)


def _regression(key: str, report: Report, path: tuple[str | int, ...]) -> GateOutcome:
    gate = f"{REGRESSION}: {key}"
    row = next((row for row in report.significance if row.key == key), None)
    if row is None:
        why = report.significance_note or "the report has no significance test of this metric"
        return GateOutcome(gate, True, f"cannot judge significance: {why}", path)
    if row.verdict == "worse":
        return GateOutcome(gate, False, f"significantly worse: {_interval(row)}", path)
    return GateOutcome(gate, True, f"{row.verdict}: {_interval(row)}", path)


def _interval(row: Significance) -> str:
    sign = "+" if row.delta > 0 else ""
    return f"{sign}{number(row.delta)}, 95 % CI {number(row.low)} … {number(row.high)}"


@dataclass(frozen=True)
class GateVerdict:
    """What the gates make of a report: the check's title, the summary's top and the annotations."""

    outcomes: list[GateOutcome]

    @property
    def failed(self) -> list[GateOutcome]:
        """Return the gates that failed."""
        return [outcome for outcome in self.outcomes if not outcome.passed]

    @property
    def title(self) -> str | None:
        """Return the check title of a gate failure (the contract deploying reads), else None."""
        return gate_failed_title([o.short for o in self.failed]) if self.failed else None

    def summary(self) -> str:
        """Return the gates' Markdown for the top of the check summary ("" without gates)."""
        if not self.outcomes:
            return ""
        failed, total = len(self.failed), len(self.outcomes)
        head = f"### FAILED: {failed} of {total} gates" if failed else f"### Passed: all {total} gates"
        rows = [
            f"- {'passed' if o.passed else '**FAILED**'} {inert.code(o.gate)}: {inert.text(o.detail)}"
            for o in self.outcomes
        ]
        source = f"<sub>Gates from `{CONFIG_PATH}` on the default branch.</sub>"
        return "\n".join([head, "", *rows, "", source])

    def annotations(self, config_text: str) -> tuple[Annotation, ...]:
        """Return a failure annotation on `.github/orbit.yml` at each failed gate's line."""
        return tuple(
            Annotation(
                CONFIG_PATH, line_of(config_text, o.path), f"{o.gate}: {o.detail}", title="Gate failed"
            )
            for o in self.failed
        )


@dataclass(frozen=True)
class GateInputs:
    """The gates of a pull request's run: the base branch's file, and the PR's own when it is invalid."""

    config: RepoConfig  # the base branch's (the defaults when its file is invalid)
    base_text: str
    base_error: RepoConfigError | None = None
    head_error: RepoConfigError | None = None  # the PR changes the file into an invalid one


def gated(update: CheckUpdate, inputs: GateInputs, report: Report) -> CheckUpdate:
    """Return a finished report's check update with the gates' conclusion, title, summary and annotations."""
    if inputs.base_error is not None:
        top = config_summary(inputs.base_error, "on the default branch")
        update = _failing(update, INVALID_CONFIG, top, config_annotations(inputs.base_error))
    else:
        verdict = GateVerdict(evaluate(inputs.config.gates, report))
        if verdict.failed:
            update = _failing(update, verdict.title, verdict.summary(), verdict.annotations(inputs.base_text))
        elif verdict.outcomes:
            update = replace(update, summary=f"{verdict.summary()}\n\n{update.summary or ''}")
    if inputs.head_error is not None:
        failing = update.conclusion == "failure"  # keep the title of what failed first
        own = None if failing else "Invalid orbit configuration in this pull request"
        top = config_summary(inputs.head_error, "in this pull request")
        update = _failing(update, own, top, config_annotations(inputs.head_error))
    return update


def _failing(
    update: CheckUpdate, title: str | None, top: str, annotations: tuple[Annotation, ...]
) -> CheckUpdate:
    return replace(
        update,
        conclusion="failure",
        title=title or update.title,
        summary=f"{top}\n\n{update.summary or ''}",
        annotations=update.annotations + annotations,
    )


async def gate_inputs(github: Pulls, repo: Repo, pull: int, sha: str) -> GateInputs:
    """Read the gates from the default branch, and check the PR's own `.github/orbit.yml` if it differs.

    A pull request cannot loosen its own gates: they come from the default branch's file, what guards
    production, never from its base, which its author may have made (and may change after training).
    """
    default = (await github.pull_request(repo, pull)).default_branch
    base_text = await github.file_text(repo, CONFIG_PATH, default)
    config, base_error = RepoConfig(), None
    try:
        config = parse_config(base_text)
    except RepoConfigError as error:
        base_error = error
    head_text, head_error = await github.file_text(repo, CONFIG_PATH, sha), None
    if head_text != base_text:
        try:
            parse_config(head_text)
        except RepoConfigError as error:
            head_error = error
    return GateInputs(config, base_text or "", base_error, head_error)
