"""What the verdict reads: predictions files (where dvc.yaml puts them, base from git) and images."""

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import yaml
from PIL import Image

from runner.report.imagediff import visibly_changed
from runner.report.significance import PredictionsError, judge_change, predictions_path, read_predictions
from tests.conftest import run

HEADER = "id,label,prediction,confidence\n"


def csv_of(rows: list[tuple[str, str, str]]) -> str:
    return HEADER + "".join(f"{i},{label},{guess},0.9\n" for i, label, guess in rows)


def test_the_path_is_where_dvc_yaml_declares_predictions_csv(tmp_path: Path) -> None:
    assert predictions_path(tmp_path) == "evaluation/predictions.csv", "no dvc.yaml: the default"
    stages = {"eval": {"cmd": "x", "outs": ["out/plots", {"out/scores/predictions.csv": {"cache": False}}]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    assert predictions_path(tmp_path) == "out/scores/predictions.csv"
    stages["eval"]["wdir"] = "sub"
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    assert predictions_path(tmp_path) == "sub/out/scores/predictions.csv"
    (tmp_path / "dvc.yaml").write_text("stages: [not, a, mapping")
    assert predictions_path(tmp_path) == "evaluation/predictions.csv"


def test_this_repositorys_pipeline_declares_its_predictions() -> None:
    assert predictions_path(Path(__file__).parents[2]) == "evaluation/predictions.csv"


def test_a_predictions_file_is_read_and_a_bad_one_refused_with_the_reason() -> None:
    read = read_predictions(csv_of([("a.png", "Mars", "Moon"), ("b.png", "Moon", "Moon")]).encode())
    assert (read.ids, read.labels, read.predictions) == (
        ["a.png", "b.png"],
        ["Mars", "Moon"],
        ["Moon", "Moon"],
    )
    with pytest.raises(PredictionsError, match="no column prediction"):
        read_predictions(b"id,label,guess\na,b,c\n")
    with pytest.raises(PredictionsError, match="line 3 lacks a value"):
        read_predictions(b"id,label,prediction\na,b,c\nd,,f\n")
    with pytest.raises(PredictionsError, match="not a UTF-8 CSV"):
        read_predictions(b"id,label,prediction\n\xff\xfe,b,c\n")


def git_project(root: Path, base_predictions: str | None) -> Path:
    root.mkdir()
    run(["git", "init", "-q", "-b", "main"], root)
    (root / "evaluation").mkdir()
    (root / "README").write_text("x\n")
    if base_predictions is not None:
        (root / "evaluation" / "predictions.csv").write_text(base_predictions)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "base"], root)
    return root


def test_base_predictions_come_from_git_at_the_base_commit(tmp_path: Path) -> None:
    rows = [(f"{i}.png", "a" if i % 2 else "b", "a" if i % 2 else "b") for i in range(100)]
    project = git_project(tmp_path / "p", csv_of(rows))
    base_commit = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    broken = [(i, label, "a") for i, label, _ in rows]  # head predicts "a" always: 50 of 100 wrong
    (project / "evaluation" / "predictions.csv").write_text(csv_of(broken))
    judged, note = judge_change(project, base_commit, "main")
    assert note is None
    accuracy = judged[0]
    assert (accuracy.key, accuracy.base, accuracy.head, accuracy.verdict) == ("val_acc", 1.0, 0.5, "worse")

    (project / "evaluation" / "predictions.csv").write_text(csv_of(broken[:60]))
    judged, note = judge_change(project, base_commit, "main")
    assert judged == []
    assert note == (
        "Significance is not judged: base and head predicted different examples (100 and 60, 60 in common):"
        " the validation set changed."
    )


def test_without_base_predictions_the_note_says_significance_cannot_be_judged(tmp_path: Path) -> None:
    project = git_project(tmp_path / "p", None)
    base_commit = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    (project / "evaluation" / "predictions.csv").write_text(csv_of([("a", "x", "x")]))
    assert judge_change(project, base_commit, "main") == (
        [],
        "The base main has no predictions (evaluation/predictions.csv),"
        " so this report cannot judge significance.",
    )
    (project / "evaluation" / "predictions.csv").unlink()
    judged, note = judge_change(project, base_commit, "main")
    assert judged == [] and note is not None and note.startswith("The head wrote no predictions")


def figure_png(titles: list[str], slope: float = 1.0) -> bytes:
    """A real matplotlib figure: a curve and titled panels, as the pipeline draws them."""
    figure, axes = plt.subplots(1, len(titles), figsize=(3 * len(titles), 3))
    for ax, title in zip(axes, titles, strict=True):
        ax.plot([0, 1, 2, 3], [0, slope, 2 * slope, 3 * slope])
        ax.set_title(title)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100)
    plt.close(figure)
    return out.getvalue()


def with_pixels_changed(png: bytes, count: int) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for i in range(count):
        image.putpixel((40 + i, 40), (0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_three_pixels_are_not_a_change_and_a_changed_title_or_curve_is() -> None:
    base = figure_png(["Mars 98%", "Moon 91%", "Earth 99%"])
    changed_pixels = with_pixels_changed(base, 3)
    assert changed_pixels != base
    assert visibly_changed(changed_pixels, base) is False
    assert visibly_changed(base, base) is False
    assert visibly_changed(figure_png(["Mars 98%", "Pluto 55%", "Earth 99%"]), base) is True
    assert visibly_changed(figure_png(["Mars 98%", "Moon 91%", "Earth 99%"], slope=0.5), base) is True


def test_an_image_without_a_readable_base_is_not_judged() -> None:
    head = figure_png(["a"] * 2)
    assert visibly_changed(head, None) is None
    assert visibly_changed(head, b"not a png") is None
