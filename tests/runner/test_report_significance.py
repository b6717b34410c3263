"""The report's verdict as rendered: a line on top, intervals in the change column, classes that matter."""

import re
from typing import Any

import pytest
from pydantic import ValidationError

from runner.report.bundle import MAX_NOTE, MetricRow, Report, Significance, Stages
from runner.report.render import markdown
from tests.report_fixtures import report

NOISE = Significance(
    key="val_acc", base=0.9, head=0.907, delta=0.007, low=-0.004, high=0.018, p_value=0.31,
    verdict="no significant change",
)  # fmt: skip
EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f]")


def judged(**changes: Any) -> Report:
    return report(significance=[NOISE.model_dump()], **changes)


def test_the_verdict_line_comes_first_with_the_interval_and_p() -> None:
    text = markdown(judged(), lambda name: name)
    second = text.split("\n\n")[1]
    assert second == "**Verdict: no significant change** — val\\_acc +0.7 pts, 95 % CI −0.4 … +1.8, p = 0.31"


def test_a_change_inside_the_noise_gets_no_better_or_worse() -> None:
    text = markdown(judged(), lambda name: name)
    row = "| val\\_acc | 0.8 | 0.9 | ▲ +0.1 (95 % CI −0.004 … +0.018, p = 0.31) no significant change |"
    assert row in text
    assert "| val\\_loss | 0.2 | 0.1 | ▼ −0.1 |" in text, "a metric not judged shows its change alone"
    assert "better" not in text and "worse" not in text


def test_a_significant_change_is_called_better() -> None:
    better = NOISE.model_copy(update={"low": 0.002, "p_value": 0.01, "verdict": "better"})
    the_report = report(significance=[better.model_dump()])
    assert the_report.verdict == "better"
    text = markdown(the_report, lambda name: name)
    assert "**Verdict: better** — val\\_acc +0.7 pts, 95 % CI +0.2 … +1.8, p = 0.01" in text
    assert "(95 % CI +0.002 … +0.018, p = 0.01) better |" in text


def per_class(deltas: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for name, delta in deltas.items():
        for score in ("precision", "recall", "f1"):
            rows.append(
                {"path": "m.json", "key": f"per_class.{name}.{score}", "base": 0.5, "head": 0.5 + delta}
            )
        rows.append({"path": "m.json", "key": f"per_class.{name}.support", "base": 30, "head": 30})
    return rows


def class_rows(text: str) -> list[str]:
    return [
        line.split(" | ")[0].removeprefix("| ")
        for line in text.splitlines()
        if line.startswith("| c") and not line.startswith("| class")
    ]


def test_the_per_class_table_shows_the_significant_classes_without_constant_columns() -> None:
    deltas = {f"c{i:02d}": i / 100 for i in range(12)}
    significant = Significance(
        key="per_class.c03.recall", base=0.5, head=0.53, delta=0.03, low=0.01, high=0.05, verdict="better"
    )
    inside = significant.model_copy(
        update={"key": "per_class.c11.recall", "verdict": "no significant change"}
    )
    the_report = report(
        metrics=per_class(deltas),
        significance=[significant.model_dump(), inside.model_dump(), NOISE.model_dump()],
    )
    text = markdown(the_report, lambda name: name)
    assert "**Per class** (the 1 class that changed significantly, of 12 classes)" in text
    assert "| class | precision | recall | f1 |" in text, "support, the same throughout, has no column"
    assert class_rows(text) == ["c03"]
    assert "| c03 | 0.5 → 0.53 | 0.5 → 0.53 **better** | 0.5 → 0.53 |" in text
    assert "support" not in text


def test_without_a_significant_class_the_five_largest_changes_are_shown() -> None:
    deltas = {"c01": 0.01, "c02": -0.2, "c03": 0.0, "c04": 0.05, "c05": 0.03, "c06": -0.04, "c07": 0.02}
    text = markdown(report(metrics=per_class(deltas), significance=[NOISE.model_dump()]), lambda name: name)
    assert "**Per class** (no class changed significantly; the 5 largest changes, of 7 classes)" in text
    assert class_rows(text) == ["c02", "c04", "c06", "c05", "c07"]
    assert "| c02 | 0.5 → 0.3 | 0.5 → 0.3 | 0.5 → 0.3 |" in text


def test_a_first_run_lists_every_class_with_the_head_alone() -> None:
    rows = [{**row, "base": None, "verdict": "new"} for row in per_class({"c1": 0.1, "c2": 0.2})]
    text = markdown(report(metrics=rows, base_has_metrics=False), lambda name: name)
    assert class_rows(text) == ["c1", "c2"]
    assert "| c1 | 0.6 | 0.6 | 0.6 |" in text


def test_where_the_base_has_no_predictions_the_report_says_it_cannot_judge() -> None:
    note = "The base main has no predictions (evaluation/predictions.csv), so this report cannot judge."
    the_report = report(significance_note=note)
    assert the_report.verdict == "unknown"
    text = markdown(the_report, lambda name: name)
    assert text.split("\n\n")[1] == f"**Verdict: unknown** — {note}"
    assert "| val\\_acc | 0.8 | 0.9 | ▲ +0.1 |" in text


def test_the_verdict_follows_accuracy_and_is_unknown_for_a_failed_run() -> None:
    worse = NOISE.model_copy(update={"key": "val_f1", "high": -0.001, "verdict": "worse"})
    assert report(significance=[worse.model_dump(), NOISE.model_dump()]).verdict == "no significant change"
    assert report(significance=[worse.model_dump()]).verdict == "unknown", "accuracy was not judged"
    failed = judged(stages=Stages(failed="train").model_dump())
    assert failed.verdict == "unknown"
    assert "Verdict" not in markdown(failed, lambda name: name)


@pytest.mark.parametrize(
    ("changed", "heading"),
    [
        (True, "#### predictions (changed since base)\n"),
        (False, "#### predictions (no visible change since base)\n"),
        (None, "#### predictions\n"),
    ],
)
def test_an_image_says_whether_it_changed_visibly(changed: bool | None, heading: str) -> None:
    the_report = report(images=[{"title": "predictions", "image": "predictions.png", "changed": changed}])
    assert heading in markdown(the_report, lambda name: name)


def test_no_emoji_anywhere_in_a_report_or_a_failure() -> None:
    full = judged(metrics=[*report().model_dump()["metrics"], *per_class({"c1": 0.1})])
    failed = judged(stages=Stages(failed="train").model_dump(), log_tail=["boom"])
    for text in (markdown(full, lambda name: name), markdown(failed, lambda name: name)):
        assert EMOJI.search(text) is None, EMOJI.findall(text)
    assert markdown(failed, lambda name: name).startswith("### Training failed at stage `train`")


def test_the_bundle_refuses_impossible_statistics_and_bounds_the_note() -> None:
    for bad in ({"low": float("nan")}, {"high": float("inf")}, {"p_value": 1.5}, {"verdict": "best"}):
        with pytest.raises(ValidationError):
            Significance.model_validate({**NOISE.model_dump(), **bad})
    long = report(significance_note="x\n" * 5_000)
    assert long.significance_note is not None and len(long.significance_note) == MAX_NOTE
    assert "\n" not in long.significance_note


def test_names_from_the_bundle_stay_inert_in_the_verdict_and_class_table() -> None:
    hostile = "<img src=x onerror=alert(1)>"
    the_report = report(
        metrics=[
            MetricRow(path="m.json", key=f"per_class.{hostile}.recall", base=0.1, head=0.2).model_dump()
        ],
        significance=[NOISE.model_copy(update={"key": f"val_acc{hostile}"}).model_dump()],
        significance_note=hostile,
    )
    text = markdown(the_report, lambda name: name)
    assert "<img" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
