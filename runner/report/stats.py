"""Is the head better than the base beyond noise? Both judged on the same examples, in numpy alone.

Accuracy gets McNemar's exact test: a two-sided binomial test on the discordant pairs (examples one
side got right and the other wrong). Every metric (accuracy, macro precision, recall and F1, and
the same per class) gets a paired bootstrap: `RESAMPLES` draws of the example indices, seeded, the
same indices for base and head, and the 95 % percentile interval of the change.

The verdict of a metric is `better` or `worse` only when its interval excludes 0 and, for accuracy,
McNemar's p is below `ALPHA` as well (a bootstrap interval is too narrow when few examples changed:
four fixed and none broken keeps 0 out of it, while p = 0.125). Otherwise: no significant change.
Per-class verdicts are not corrected for their number; the report's verdict follows accuracy alone.
"""

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from runner.report.bundle import Judgement, Significance

RESAMPLES = 2_000
SEED = 16
LEVEL = 0.95
ALPHA = 0.05
MAX_EXAMPLES = 200_000  # the bootstrap's work grows with examples × resamples
MAX_PER_CLASS = 100  # classes whose rows are listed; macro metrics cover any number
CELLS_A_CHUNK = 4_000_000  # resampled indices held at once (32 MB)
MACRO = ("precision", "recall", "f1")
DIGITS = 6

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]


class NotComparable(ValueError):
    """Base and head predictions cannot be paired; the message says why."""


@dataclass(frozen=True)
class Predictions:
    """One side's predictions: an example's id, its true class and the predicted class, in file order."""

    ids: list[str]
    labels: list[str]
    predictions: list[str]


@dataclass(frozen=True)
class Paired:
    """Base and head predictions of the same examples, as class indices."""

    classes: list[str]
    actual: Ints
    base: Ints
    head: Ints


def pair(base: Predictions, head: Predictions) -> Paired:
    """Line up base and head by example id; refuse sides that did not predict the same examples."""
    base_rows = _by_id(base, "base")
    head_rows = _by_id(head, "head")
    if base_rows.keys() != head_rows.keys():
        common = len(base_rows.keys() & head_rows.keys())
        raise NotComparable(
            f"base and head predicted different examples ({len(base_rows):,} and {len(head_rows):,},"
            f" {common:,} in common): the validation set changed"
        )
    ids = list(head_rows)
    relabelled = sum(base_rows[i][0] != head_rows[i][0] for i in ids)
    if relabelled:
        raise NotComparable(f"{relabelled:,} examples have another label in base than in head")
    if not ids:
        raise NotComparable("there are no predictions")
    if len(ids) > MAX_EXAMPLES:
        raise NotComparable(f"{len(ids):,} examples are more than the {MAX_EXAMPLES:,} judged")
    names = sorted({name for rows in (base_rows, head_rows) for pair in rows.values() for name in pair})
    index = {name: i for i, name in enumerate(names)}

    def column(rows: dict[str, tuple[str, str]], side: int) -> Ints:
        return np.array([index[rows[i][side]] for i in ids], dtype=np.int64)

    return Paired(names, column(head_rows, 0), column(base_rows, 1), column(head_rows, 1))


def _by_id(side: Predictions, name: str) -> dict[str, tuple[str, str]]:
    rows = dict(zip(side.ids, zip(side.labels, side.predictions, strict=True), strict=True))
    if len(rows) != len(side.ids):
        raise NotComparable(f"the {name}'s predictions name an example more than once")
    return rows


def mcnemar_exact(b: int, c: int) -> float:
    """Return the two-sided exact p of discordant pairs `b`, `c`: 2 P(X <= min(b, c)), X ~ Bin(b + c, ½)."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    # log space: exact enough, and no big integers for large n
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
    top = max(terms)
    log_tail = top + math.log(sum(math.exp(t - top) for t in terms)) - n * math.log(2)
    return min(1.0, 2 * math.exp(log_tail))


def mcnemar(paired: Paired) -> float:
    """Return McNemar's exact p of base against head correctness."""
    base_right = paired.base == paired.actual
    head_right = paired.head == paired.actual
    return mcnemar_exact(int((base_right & ~head_right).sum()), int((~base_right & head_right).sum()))


def _counts(values: Ints, indices: Ints, classes: int) -> Ints:
    """Return per resample (row of `indices`) how often each class occurs among the drawn values."""
    draws = len(indices)
    codes = values[indices] + (np.arange(draws, dtype=np.int64) * (classes + 1))[:, None]
    return np.bincount(codes.ravel(), minlength=draws * (classes + 1)).reshape(draws, classes + 1)[
        :, :classes
    ]


def _ratio(numerator: Ints, denominator: Ints) -> Floats:
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def scores(actual: Ints, predicted: Ints, indices: Ints, classes: int) -> dict[str, Floats]:
    """Return each metric per resample, computed as `model.metrics` does (a class never seen scores 0)."""
    wrong = classes  # a class index no example has: hits count only correct predictions
    hits = _counts(np.where(actual == predicted, actual, wrong), indices, classes)
    precision = _ratio(hits, _counts(predicted, indices, classes))
    recall = _ratio(hits, _counts(actual, indices, classes))
    f1 = _ratio(2 * precision * recall, precision + recall)  # type: ignore[arg-type]
    per_metric = dict(zip(MACRO, (precision, recall, f1), strict=True))
    result = {"val_acc": hits.sum(axis=1) / indices.shape[1]}
    result.update({f"val_{name}": values.mean(axis=1) for name, values in per_metric.items()})
    for i in range(classes if classes <= MAX_PER_CLASS else 0):
        result.update({f"per_class.{i}.{name}": values[:, i] for name, values in per_metric.items()})
    return result


def _chunks(examples: int, classes: int, resamples: int) -> list[int]:
    size = max(1, CELLS_A_CHUNK // max(examples, classes))
    return [min(size, resamples - start) for start in range(0, resamples, size)]


def bootstrap(paired: Paired, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, tuple[float, float]]:
    """Return the 95 % interval of head minus base for every metric, from the same resampled examples."""
    examples, classes = len(paired.actual), len(paired.classes)
    generator = np.random.default_rng(seed)
    deltas: dict[str, list[Floats]] = {}
    for size in _chunks(examples, classes, resamples):
        indices = generator.integers(0, examples, size=(size, examples), dtype=np.int64)
        base = scores(paired.actual, paired.base, indices, classes)
        head = scores(paired.actual, paired.head, indices, classes)
        for key, values in head.items():
            deltas.setdefault(key, []).append(values - base[key])
    tails = [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2]
    return {
        key: tuple(float(q) for q in np.quantile(np.concatenate(parts), tails))  # type: ignore[misc]
        for key, parts in deltas.items()
    }


def judge(low: float, high: float, p_value: float | None) -> Judgement:
    """Return better or worse when the interval excludes 0 (and p < ALPHA where there is a p)."""
    if p_value is not None and p_value >= ALPHA:
        return "no significant change"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no significant change"


def _named(key: str, classes: list[str]) -> str:
    if not key.startswith("per_class."):
        return key
    _, index, metric = key.split(".")
    return f"per_class.{classes[int(index)]}.{metric}"


def significance(
    base: Predictions, head: Predictions, resamples: int = RESAMPLES, seed: int = SEED
) -> list[Significance]:
    """Return every metric's change with its interval and verdict; raise NotComparable if unpaired."""
    paired = pair(base, head)
    everything = np.arange(len(paired.actual), dtype=np.int64)[None, :]
    classes = len(paired.classes)
    before = scores(paired.actual, paired.base, everything, classes)
    after = scores(paired.actual, paired.head, everything, classes)
    p_values = {"val_acc": mcnemar(paired)}
    return [
        _row(_named(key, paired.classes), before[key][0], after[key][0], interval, p_values.get(key))
        for key, interval in bootstrap(paired, resamples, seed).items()
    ]


def _row(
    key: str, old: float, new: float, interval: tuple[float, float], p_value: float | None
) -> Significance:
    low, high = (round(float(end), DIGITS) for end in interval)  # judged as shown
    return Significance(
        key=key,
        base=round(float(old), DIGITS),
        head=round(float(new), DIGITS),
        delta=round(float(new - old), DIGITS),
        low=low,
        high=high,
        p_value=p_value,
        verdict=judge(low, high, p_value),
    )
