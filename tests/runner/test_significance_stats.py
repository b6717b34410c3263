"""The statistics of the report's verdict on constructed predictions whose answers are known."""

import math

import numpy as np
import pytest

from runner.report.bundle import Significance
from runner.report.stats import (
    NotComparable,
    Predictions,
    bootstrap,
    judge,
    mcnemar_exact,
    pair,
    significance,
)

CLASSES = [f"class{i}" for i in range(10)]


def predictions(labels: list[str], predicted: list[str]) -> Predictions:
    return Predictions([f"img_{i:04d}.png" for i in range(len(labels))], labels, predicted)


def base_and_fixed(fixed: int, examples: int = 300, wrong: int = 60) -> tuple[Predictions, Predictions]:
    """A base wrong on `wrong` examples (spread over the classes) and a head that fixes `fixed` of them."""
    labels = [CLASSES[i % 10] for i in range(examples)]
    base = [CLASSES[(i + 1) % 10] if i < wrong else label for i, label in enumerate(labels)]
    head = [label if i < fixed else guess for i, (label, guess) in enumerate(zip(labels, base, strict=True))]
    return predictions(labels, base), predictions(labels, head)


def by_key(base: Predictions, head: Predictions) -> dict[str, Significance]:
    return {row.key: row for row in significance(base, head)}


def binomial_two_sided(b: int, c: int) -> float:
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / float(2**n))


@pytest.mark.parametrize(("b", "c"), [(10, 2), (2, 10), (0, 4), (5, 5), (1, 0), (30, 12), (400, 350)])
def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs(b: int, c: int) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(binomial_two_sided(b, c), rel=1e-9)


def test_mcnemar_of_ten_against_two_by_hand() -> None:
    expected = 2 * (math.comb(12, 0) + math.comb(12, 1) + math.comb(12, 2)) / 2**12  # 158 / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(expected, rel=1e-12)
    assert round(expected, 4) == 0.0386
    assert mcnemar_exact(0, 0) == 1.0


def test_identical_predictions_have_a_zero_interval_and_no_change() -> None:
    base, _ = base_and_fixed(0)
    rows = significance(base, base)
    assert len(rows) == 4 + 3 * 10
    for row in rows:
        assert (row.delta, row.low, row.high) == (0, 0, 0), row.key
        assert row.verdict == "no significant change"
    accuracy = rows[0]
    assert (accuracy.key, accuracy.base, accuracy.p_value) == ("val_acc", 0.8, 1.0)


def test_a_head_that_fixes_40_of_300_is_better() -> None:
    base, head = base_and_fixed(40)
    rows = by_key(base, head)
    accuracy = rows["val_acc"]
    assert accuracy.base == 0.8 and accuracy.head == pytest.approx(280 / 300, abs=1e-6)
    assert accuracy.p_value == pytest.approx(binomial_two_sided(0, 40))
    assert 0 < accuracy.low < accuracy.delta < accuracy.high
    assert accuracy.verdict == "better"
    for key in ("val_precision", "val_recall", "val_f1"):
        assert rows[key].verdict == "better", key
    assert rows["per_class.class0.recall"].verdict == "better"  # 4 of its 6 errors fixed, of 30


def test_a_head_that_breaks_40_is_worse() -> None:
    base, head = base_and_fixed(40)
    rows = by_key(head, base)
    assert rows["val_acc"].verdict == "worse"
    assert rows["val_acc"].high < 0


def test_four_fixed_and_none_broken_is_no_significant_change_by_mcnemar() -> None:
    """The bootstrap keeps 0 out of the interval here; McNemar's p = 2/16 keeps the verdict."""
    base, head = base_and_fixed(4)
    accuracy = by_key(base, head)["val_acc"]
    assert accuracy.p_value == pytest.approx(0.125)
    assert accuracy.low > 0
    assert accuracy.verdict == "no significant change"


def test_a_change_inside_the_noise_is_no_significant_change() -> None:
    labels = [CLASSES[i % 10] for i in range(300)]
    base = [CLASSES[(i + 1) % 10] if i % 7 == 0 else label for i, label in enumerate(labels)]
    head = [CLASSES[(i + 1) % 10] if i % 8 == 0 else label for i, label in enumerate(labels)]
    rows = by_key(predictions(labels, base), predictions(labels, head))
    accuracy = rows["val_acc"]
    assert accuracy.delta > 0 and accuracy.low < 0 < accuracy.high
    assert accuracy.verdict == "no significant change"


def test_the_same_inputs_give_the_same_interval_and_another_seed_another() -> None:
    base, head = base_and_fixed(12)
    paired = pair(base, head)
    first = bootstrap(paired)
    assert bootstrap(paired) == first
    assert significance(base, head) == significance(base, head)
    assert bootstrap(paired, seed=99)["val_acc"] != first["val_acc"]


def test_rows_are_paired_by_id_whatever_their_order() -> None:
    base, head = base_and_fixed(40)
    shuffled = np.random.default_rng(1).permutation(len(head.ids))
    reordered = Predictions(
        [head.ids[i] for i in shuffled],
        [head.labels[i] for i in shuffled],
        [head.predictions[i] for i in shuffled],
    )
    assert [r.delta for r in significance(base, reordered)] == [r.delta for r in significance(base, head)]


def test_another_validation_set_is_not_judged() -> None:
    base, head = base_and_fixed(40)
    fewer = Predictions(head.ids[:250], head.labels[:250], head.predictions[:250])
    with pytest.raises(NotComparable, match=r"different examples \(300 and 250, 250 in common\)"):
        significance(base, fewer)
    relabelled = Predictions(head.ids, ["class3", *head.labels[1:]], head.predictions)
    with pytest.raises(NotComparable, match="1 examples have another label"):
        significance(base, relabelled)
    twice = Predictions([*base.ids[:-1], base.ids[0]], base.labels, base.predictions)
    with pytest.raises(NotComparable, match="name an example more than once"):
        significance(twice, head)


@pytest.mark.parametrize(
    ("low", "high", "p", "verdict"),
    [
        (0.01, 0.05, 0.01, "better"),
        (-0.05, -0.01, 0.01, "worse"),
        (0.01, 0.05, 0.06, "no significant change"),
        (-0.01, 0.05, 0.01, "no significant change"),
        (0.0, 0.05, None, "no significant change"),
        (0.001, 0.05, None, "better"),
    ],
)
def test_the_verdict_needs_the_interval_to_exclude_zero_and_p_below_alpha(
    low: float, high: float, p: float | None, verdict: str
) -> None:
    assert judge(low, high, p) == verdict
