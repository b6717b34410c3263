"""Params and metrics of head against base: changed keys only, and each metric judged by its sense."""

import math
from collections.abc import Iterator, Mapping
from typing import Any

from runner.report.bundle import MetricRow, ParamChange, Sense, Verdict

FileValues = Mapping[str, Mapping[str, Any]]  # {file: {dotted key: value}}
LOWER_IS_BETTER = ("loss", "error", "err", "mse", "mae", "rmse", "perplexity", "latency", "duration", "time")
NEUTRAL = frozenset({"support", "count", "samples", "epoch", "epochs", "step", "steps"})
TOLERANCE = 1e-9


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted key, leaf value) of nested mappings; lists stay whole values."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def params_diff(base: FileValues, head: FileValues) -> list[ParamChange]:
    """Return the parameters added, removed or changed, file by file, in head's order."""
    changes = []
    for path in dict.fromkeys([*head, *base]):
        old, new = base.get(path, {}), head.get(path, {})
        for key in dict.fromkeys([*new, *old]):
            if key not in old:
                changes.append(ParamChange(path=path, key=key, new=new[key], added=True))
            elif key not in new:
                changes.append(ParamChange(path=path, key=key, old=old[key], removed=True))
            elif old[key] != new[key]:
                changes.append(ParamChange(path=path, key=key, old=old[key], new=new[key]))
    return changes


def sense_of(key: str) -> Sense:
    """Return whether a metric is better higher, lower, or has no sense (a count), from its name."""
    leaf = key.rsplit(".", 1)[-1].lower()
    if leaf in NEUTRAL:
        return "neutral"
    if any(word in leaf.replace("-", "_").split("_") or leaf.endswith(word) for word in LOWER_IS_BETTER):
        return "lower"
    return "higher"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def verdict(base: float | None, head: float | None, sense: Sense) -> Verdict:
    """Judge a metric's change by its sense."""
    if base is None:
        return "new"
    if head is None:
        return "missing"
    if abs(head - base) <= TOLERANCE:
        return "same"
    if sense == "neutral":
        return "changed"
    return "better" if (head > base) == (sense == "higher") else "worse"


def metrics_diff(base: FileValues, head: FileValues) -> list[MetricRow]:
    """Return every numeric metric of either side with base, head, sense and verdict."""
    rows = []
    for path in dict.fromkeys([*head, *base]):
        old, new = base.get(path, {}), head.get(path, {})
        for key in dict.fromkeys([*new, *old]):
            before, after = _number(old.get(key)), _number(new.get(key))
            if before is None and after is None:
                continue
            sense = sense_of(key)
            rows.append(
                MetricRow(
                    path=path,
                    key=key,
                    base=before,
                    head=after,
                    sense=sense,
                    verdict=verdict(before, after, sense),
                )
            )
    return rows
