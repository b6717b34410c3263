"""The DVC pipeline end to end in a copy of the repository, with real git and DVC."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_PARAMS, copy_project, run

pytestmark = pytest.mark.slow


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_outputs_exist_and_metrics_are_sane(trained_project: Path) -> None:
    for output in (
        "data/raw/Jupiter",
        "data/prepared/val.npz",
        "model/classifier.bentomodel",
        "evaluation/history.csv",
        "evaluation/confusion.csv",
        "evaluation/predictions.csv",
        "evaluation/plots/predictions.png",
        "evaluation/plots/confusion_matrix.png",
        "evaluation/plots/training_history.png",
    ):
        assert (trained_project / output).exists(), output
    metrics = json.loads((trained_project / "evaluation/metrics.json").read_text())
    assert 0.5 <= metrics["val_acc"] <= 1.0
    assert 0.0 < metrics["val_loss"] < 2.3
    assert set(metrics["per_class"]) == set(
        json.loads((trained_project / "data/prepared/dataset.json").read_text())["classes"]
    )
    assert {"val_precision", "val_recall", "val_f1"} <= set(metrics)
    assert all(set(scores) == {"precision", "recall", "f1"} for scores in metrics["per_class"].values())


def test_predictions_name_each_validation_image_with_its_label_and_prediction(trained_project: Path) -> None:
    with (trained_project / "evaluation/predictions.csv").open(newline="") as handle:
        predictions = list(csv.DictReader(handle))
    with (trained_project / "evaluation/confusion.csv").open(newline="") as handle:
        confusion = list(csv.DictReader(handle))
    assert [(r["id"], r["label"], r["prediction"]) for r in predictions] == [
        (r["file"], r["actual"], r["predicted"]) for r in confusion
    ]
    assert all(0 < float(r["confidence"]) <= 1 for r in predictions)
    metrics = json.loads((trained_project / "evaluation/metrics.json").read_text())
    right = sum(r["label"] == r["prediction"] for r in predictions)
    assert round(right / len(predictions), 4) == metrics["val_acc"]


def test_dvc_reads_the_metrics_and_plots(trained_project: Path) -> None:
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], trained_project).stdout)
    assert "val_acc" in json.dumps(shown)
    run(["dvc", "plots", "show", "--out", "plots-html"], trained_project)
    assert (trained_project / "plots-html/index.html").stat().st_size > 1000


def test_second_repro_runs_nothing(trained_project: Path) -> None:
    result = run(["dvc", "repro"], trained_project)
    assert ran_stages(result.stdout) == set()
    assert "up to date" in result.stdout


def test_changing_a_train_param_reruns_only_train_and_evaluate(tmp_path: Path) -> None:
    project = copy_project(tmp_path, TINY_PARAMS)
    first = run(["dvc", "repro"], project)
    assert ran_stages(first.stdout) == {"generate", "prepare", "train", "evaluate"}
    metrics_before = json.loads((project / "evaluation/metrics.json").read_text())

    forced = run(["dvc", "repro", "--force", "--single-item", "train"], project)
    assert ran_stages(forced.stdout) == {"train"}
    run(["dvc", "repro"], project)
    assert (
        json.loads((project / "evaluation/metrics.json").read_text()) == metrics_before
    )  # same seed, same metrics

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["lr"] = 0.004
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = run(["dvc", "repro"], project)
    assert ran_stages(changed.stdout) == {"train", "evaluate"}
    metrics_diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project).stdout)
    assert "val_acc" in metrics_diff["evaluation/metrics.json"]
    diff = json.loads(run(["dvc", "params", "diff", "--json"], project).stdout)
    assert diff["params.yaml"]["train.lr"]["old"] == 0.005
    assert diff["params.yaml"]["train.lr"]["new"] == 0.004
