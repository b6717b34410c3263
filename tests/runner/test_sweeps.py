"""The pieces of a sweep: the grid a comment asks for, the table and plot from recorded points (every
text from a bundle made inert), the best point, and a sweep that a new training leaves running."""

import functools

import pytest

from bot.events import Repo
from bot.github import RunInfo
from bot.runs import TRAIN, RecordedRun, TrainingRun, record, training_run
from runner.sweeps.aggregate import best_point
from runner.sweeps.grid import MAX_POINTS, SweepError, is_sweep, parse_grid
from runner.sweeps.plot import parallel_coordinates
from runner.sweeps.state import DONE, SweepPoint
from runner.sweeps.table import sweep_markdown
from runner.training import supersede
from tests.fakes import DEFAULT_HEAD, FakeGitHub, memory_inbox
from tests.runs import REPOSITORY

SHA = "a" * 40


def test_a_grid_is_every_combination_in_the_order_written() -> None:
    grid = parse_grid("train.lr=0.01,0.003 train.epochs=10,20")
    assert [p.params for p in grid.points()] == [
        ("train.lr=0.01", "train.epochs=10"),
        ("train.lr=0.01", "train.epochs=20"),
        ("train.lr=0.003", "train.epochs=10"),
        ("train.lr=0.003", "train.epochs=20"),
    ]
    assert parse_grid(f"{SHA} train.opt=adam,sgd").size == 2, "after a fork's pinned SHA"
    assert is_sweep("train.lr=1") and not is_sweep("") and not is_sweep(SHA)


def test_sixteen_points_run_and_seventeen_are_refused_with_the_count() -> None:
    assert parse_grid("a=" + ",".join(map(str, range(MAX_POINTS)))).size == MAX_POINTS
    with pytest.raises(SweepError, match=r"would have 17 points \(17\); at most 16"):
        parse_grid("a=" + ",".join(map(str, range(17))))


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ("train.lr", "is not `key=value"),
        ("train.lr=1 train.lr=2", "given twice"),
        ("train.lr=", "has no values"),
        ("train.lr=1,,2", "each value is"),
        ("train.lr=1,1", "lists a value twice"),
        ("train.lr=1;id", "each value is"),
        ("train.lr=`id`", "each value is"),
        ("train.lr=1 oops", "is not `key=value"),
        ("-x=1", "a key is"),
        ("train/lr=1", "a key is"),
        (" ".join(f"k{i}=1" for i in range(9)), "9 keys are swept; at most 8"),
        ("k=" + "1" * 33, "each value is"),
        (" ".join(f"{'k' * 60}{i}=1" for i in range(5)), "characters long; at most 240"),
    ],
)
def test_bad_keys_and_values_are_refused_with_the_reason(args: str, reason: str) -> None:
    with pytest.raises(SweepError, match=reason):
        parse_grid(args)


def test_a_refusal_never_echoes_markup_from_the_comment() -> None:
    with pytest.raises(SweepError) as error:
        parse_grid("<img src=x>=1")
    assert "<" not in str(error.value) and "`" in str(error.value)


def test_a_sweep_points_run_name_carries_its_experiment_and_settings() -> None:
    run = TrainingRun(7, SHA, "main", "sweep-5-1", ("train.lr=0.01", "train.epochs=20"))
    assert run.title == f"orbit/train PR #7 at {SHA} experiment sweep-5-1 (train.lr=0.01 train.epochs=20)"
    assert training_run(run.title) == TrainingRun(7, SHA, "", "sweep-5-1", run.params)
    assert run.inputs == {
        "pr": "7",
        "sha": SHA,
        "base": "main",
        "experiment": "sweep-5-1",
        "set": "train.lr=0.01 train.epochs=20",
    }
    assert training_run(f"orbit/train PR #7 at {SHA}") == TrainingRun(7, SHA)
    assert not TrainingRun(7, SHA).sweep
    assert training_run(f"orbit/train PR #7 at {SHA} experiment x (a=1") == TrainingRun(7, SHA)


def point(index: int, acc: float | None, status: str = DONE, name: str = "val_acc") -> SweepPoint:
    metrics = [] if acc is None else [{"key": name, "head": acc, "base": 0.8, "low": -0.01, "high": 0.03}]
    return SweepPoint(
        9,
        index,
        7,
        SHA,
        f"sweep-9-{index}",
        (f"train.lr={index}",),
        100 + index,
        status,
        {"metrics": metrics},
    )


def test_the_table_marks_the_best_and_makes_bundle_text_inert() -> None:
    points = [point(0, 0.9), point(1, 0.93, name="val_acc"), point(2, None, status="pending")]
    evil = SweepPoint(
        9, 3, 7, SHA, "sweep-9-3", ("train.lr=3",), 103, "failed", {"note": "<b>@team #1</b> |x"}
    )
    body = sweep_markdown([*points, evil], running={2}, plot_url=None)
    assert "3 of 4 done" in body
    lines = body.splitlines()
    assert any(line.startswith("| ★ best | `sweep-9-1`") for line in lines)
    assert "0.93 (+0.13, 95 % CI −0.01 … +0.03)" in body
    assert any(line.startswith("|  | `sweep-9-2`") and line.endswith("| running |") for line in lines)
    assert "<b>" not in body and "@\u200dteam" in body and "\\|x" in body
    assert best_point(points) == points[1]


def test_lower_is_better_ranks_by_the_lowest_and_no_metric_ranks_nothing() -> None:
    def loss(index: int, value: float) -> SweepPoint:
        result = {"metrics": [{"key": "val_loss", "head": value, "sense": "lower"}]}
        return SweepPoint(9, index, 7, SHA, f"sweep-9-{index}", ("a=1",), None, DONE, result)

    assert best_point([loss(0, 0.3), loss(1, 0.1), loss(2, 0.2)]) == loss(1, 0.1)
    assert best_point([point(0, None)]) is None
    assert parallel_coordinates([point(0, None)]) is None


def test_the_plot_escapes_every_text_and_draws_a_line_per_done_point() -> None:
    evil = SweepPoint(9, 2, 7, SHA, "sweep-9-2", ("train.opt=adam",), 1, DONE)
    points = [
        SweepPoint(
            9,
            i,
            7,
            SHA,
            f"sweep-9-{i}",
            (f"train.opt={opt}",),
            i,
            DONE,
            {"metrics": [{"key": "</text><script>x</script>", "head": 0.5 + i / 10}]},
        )
        for i, opt in enumerate(["adam", "sgd"])
    ]
    svg = parallel_coordinates([*points, evil]).decode()  # type: ignore[union-attr]
    assert "<script>" not in svg and "&lt;/text&gt;&lt;script&gt;" in svg
    assert svg.count("<polyline") == 2, "the point without the metric is not drawn"


async def test_a_new_training_of_the_same_commit_leaves_its_sweep_running() -> None:
    store, github = memory_inbox(), FakeGitHub()
    point_run = TrainingRun(7, SHA, "", "sweep-9-0", ("a=1",))
    older = TrainingRun(7, "b" * 40, "", "sweep-8-0", ("a=1",))
    for run_id, run in ((31, point_run), (32, older), (33, TrainingRun(7, "b" * 40))):
        recorded = RecordedRun(run_id, REPOSITORY, TRAIN, "train.yml", f"t:{run_id}", run.title, DEFAULT_HEAD)
        store.write(functools.partial(record, run=recorded))
        github.runs.append(RunInfo(run_id, "queued", run.title, DEFAULT_HEAD))
    cancelled = await supersede(github, store, Repo("octo-org", "model"), 7, "train.yml", SHA)
    assert cancelled == [32, 33], "an older commit's sweep and training stop; this commit's sweep runs on"
    assert github.named("update_check") == [], "no check run of the head is touched for a point"
