"""Read base and head predictions and judge each metric's change, or say why it cannot be judged."""

import csv
import io
from pathlib import Path
from typing import Any

import yaml

from runner.report.baseline import read_at, read_head
from runner.report.bundle import Significance
from runner.report.stats import NotComparable, Predictions, significance

FILE_NAME = "predictions.csv"
DEFAULT_PATH = f"evaluation/{FILE_NAME}"
COLUMNS = ("id", "label", "prediction")


class PredictionsError(ValueError):
    """A predictions file is not a CSV of id, label and prediction; the message says why."""


def predictions_path(project: Path) -> str:
    """Return where dvc.yaml declares an output named predictions.csv, else evaluation/predictions.csv."""
    try:
        stages = (yaml.safe_load((project / "dvc.yaml").read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return DEFAULT_PATH
    for stage in stages.values() if isinstance(stages, dict) else []:
        for path in _declared(stage):
            if Path(path).name == FILE_NAME:
                wdir = stage.get("wdir", ".") if isinstance(stage.get("wdir", "."), str) else "."
                return (Path(wdir) / path).as_posix()
    return DEFAULT_PATH


def _declared(stage: Any) -> list[str]:
    """Return the paths of a stage's outs, metrics and plots (each a string or a one-key mapping)."""
    if not isinstance(stage, dict):
        return []
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind) or []:
            if isinstance(entry, str):
                paths.append(entry)
            elif isinstance(entry, dict):
                paths += [str(key) for key in entry]
    return paths


def read_predictions(data: bytes) -> Predictions:
    """Parse a predictions CSV: a header with at least id, label and prediction, then one row an example."""
    try:
        rows = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        missing = [column for column in COLUMNS if column not in (rows.fieldnames or [])]
        if missing:
            raise PredictionsError(f"it has no column {', '.join(missing)}")
        ids, labels, predictions = [], [], []
        for line, row in enumerate(rows, start=2):
            values = [row.get(column) for column in COLUMNS]
            if any(value is None or value == "" for value in values):
                raise PredictionsError(f"line {line} lacks a value")
            ids.append(str(values[0]))
            labels.append(str(values[1]))
            predictions.append(str(values[2]))
    except (UnicodeDecodeError, csv.Error) as error:
        raise PredictionsError(f"it is not a UTF-8 CSV ({error})") from error
    return Predictions(ids, labels, predictions)


def judge_change(project: Path, base_commit: str, base_ref: str) -> tuple[list[Significance], str | None]:
    """Return each metric's judged change of head against base, or no rows and the reason."""
    path = predictions_path(project)
    head = read_head(project, path)
    if head is None:
        return [], f"The head wrote no predictions ({path}), so this report cannot judge significance."
    base = read_at(project, base_commit, path)
    if base is None:
        return [], (
            f"The base {base_ref} has no predictions ({path}), so this report cannot judge significance."
        )
    try:
        return significance(_parsed(base, "base"), _parsed(head, "head")), None
    except (PredictionsError, NotComparable) as error:
        return [], f"Significance is not judged: {error}."


def _parsed(data: bytes, side: str) -> Predictions:
    try:
        return read_predictions(data)
    except PredictionsError as error:
        raise PredictionsError(f"the {side}'s {FILE_NAME} is unreadable: {error}") from error
