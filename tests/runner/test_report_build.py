"""`orbit report build` on real DVC repositories: params, metrics and plots of head against base."""

import json
from pathlib import Path

import pytest

from runner.report import collect as collect_module
from runner.report.build import ReportError, RunRecord, build_report, resolve
from runner.report.bundle import Curve, Report, Series
from runner.report.drawing import Drawer, draw_all
from runner.report.figuredata import ConfusionFigure, CurveFigure, Line
from runner.report.gitcollect import Unsupported, collect_from_git
from tests.conftest import run
from tests.report_project import commit, make_project, repro, set_params, trained_base

pytestmark = pytest.mark.slow


def build(project: Path, tmp_path: Path, run_record: RunRecord | None = None) -> Report:
    report = build_report(project, "main", tmp_path / "bundle", run_record)
    assert Report.model_validate_json((tmp_path / "bundle" / "report.json").read_text()) == report
    return report


def metric(report: Report, key: str) -> tuple[float | None, float | None, str]:
    row = next(row for row in report.metrics if row.key == key)
    return row.base, row.head, row.verdict


def test_no_change_says_so(tmp_path: Path) -> None:
    project = trained_base(tmp_path / "p")
    report = build(project, tmp_path, repro(project))
    assert report.params == []
    assert {row.verdict for row in report.metrics} == {"same"}
    assert report.stages.cached == ["prepare", "train"]
    assert report.stages.ran == []
    assert report.verdict == "no significant change"
    assert {(row.delta, row.low, row.high) for row in report.significance} == {(0, 0, 0)}
    assert [image.changed for image in report.images] == [False]
    markdown = (tmp_path / "bundle" / "report.md").read_text()
    assert "no parameter changed" in markdown
    assert "**Verdict: no significant change** — val\\_acc 0 pts, 95 % CI 0 … 0, p = 1" in markdown
    assert "#### predictions (no visible change since base)" in markdown


def test_params_change_and_metric_improvement(tmp_path: Path) -> None:
    project = trained_base(tmp_path / "p")
    set_params(project, quality=0.9, lr=0.05)
    report = build(project, tmp_path, repro(project))
    assert [(c.key, c.old, c.new) for c in report.params] == [
        ("train.lr", 0.1, 0.05),
        ("train.quality", 0.8, 0.9),
    ]
    assert metric(report, "val_acc") == (0.8, 0.9, "better")
    assert metric(report, "val_loss") == (0.2, 0.1, "better")  # lower loss is better
    assert report.stages.ran == ["train"]
    assert report.stages.cached == ["prepare"]
    markdown = (tmp_path / "bundle" / "report.md").read_text()
    assert report.verdict == "better"
    assert markdown.startswith(
        f"### Training report for `{report.facts.commit[:7]}` against `main`"
        f" (`{(report.facts.base_commit or '')[:7]}`)\n\n"
        "**Verdict: better** — val\\_acc +10 pts, 95 % CI +6 … +14.5, p < 0.001\n"
    )
    assert "| val\\_acc | 0.8 | 0.9 | ▲ +0.1 (95 % CI +0.06 … +0.145, p < 0.001) better |" in markdown
    assert "| val\\_loss | 0.2 | 0.1 | ▼ \u22120.1 |" in markdown, "no predictions judge it: no verdict"
    assert "| a | 0.8 → 0.9 **better** |" in markdown
    assert "#### predictions (changed since base)" in markdown
    assert "| train.lr | `0.1` | `0.05` |" in markdown


def test_metric_regression_and_new_and_missing_metrics(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    set_params(project, extra_metric=True)
    repro(project)
    commit(project, "base with f1")
    set_params(project, quality=0.7)
    report = build(project, tmp_path, repro(project))
    assert metric(report, "val_acc") == (0.8, 0.7, "worse")
    assert metric(report, "val_loss") == (0.2, 0.3, "worse")
    assert metric(report, "per_class.a.recall")[2] == "worse"
    assert report.verdict == "worse"
    set_params(project, quality=0.7, extra_metric=False)
    (project / "evaluation" / "metrics.json").write_text(
        json.dumps({"val_acc": 0.7, "val_loss": 0.3, "mae": 1})
    )
    report = build(project, tmp_path)
    assert metric(report, "f1") == (0.79, None, "missing")
    assert metric(report, "mae") == (None, 1.0, "new")
    markdown = (tmp_path / "bundle" / "report.md").read_text()
    assert "| f1 | 0.79 | — | missing in head |" in markdown
    assert "| mae | — | 1 | new |" in markdown


def test_first_run_shows_the_head_alone(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    commit(project, "pipeline, never run")
    report = build(project, tmp_path, repro(project))
    assert not report.base_has_metrics
    assert {row.verdict for row in report.metrics} == {"new"}
    assert report.curves[0].base == [] and report.curves[0].head
    assert report.confusions[0].base is None
    markdown = (tmp_path / "bundle" / "report.md").read_text()
    assert "First run: `main` has no metrics yet" in markdown
    assert report.verdict == "unknown" and report.significance == []
    assert (
        "**Verdict: unknown** — The base main has no predictions (evaluation/predictions.csv),"
        " so this report cannot judge significance." in markdown
    )
    assert "| metric | head |" in markdown


def test_plots_head_against_base_and_a_missing_plot(tmp_path: Path) -> None:
    project = trained_base(tmp_path / "p")
    set_params(project, quality=0.9)
    repro(project)
    report = build(project, tmp_path)
    bundle = tmp_path / "bundle"
    loss = report.curves[0]
    assert [s.name for s in loss.head] == [s.name for s in loss.base] == ["train_loss", "val_loss"]
    assert loss.head[0].y != loss.base[0].y
    confusion = report.confusions[0]
    assert confusion.classes == ["a", "b"]
    assert (confusion.head, confusion.base) == ([[9, 1], [0, 10]], [[8, 2], [0, 10]])
    assert sorted(p.name for p in bundle.glob("*.png")) == [
        "confusion_matrix.png",
        "loss.png",
        "predictions.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in bundle.glob("*.png"))
    markdown = (bundle / "report.md").read_text()
    assert "| **a** | **9** (8) | 1 (2) |" in markdown  # the text form of the matrix, base in brackets
    assert "xychart-beta" in markdown

    (project / "evaluation" / "history.csv").unlink()
    report = build(project, tmp_path)
    assert report.missing_plots == ["Loss: evaluation/history.csv was not produced"]
    assert report.curves == []
    assert not (bundle / "loss.png").exists(), "an earlier bundle's figure does not linger"
    assert (
        "Plots not drawn: Loss: evaluation/history.csv was not produced."
        in (bundle / "report.md").read_text()
    )


def test_a_failed_stage_is_named_with_its_log_redacted(tmp_path: Path) -> None:
    project = trained_base(tmp_path / "p")
    set_params(project, fail=True)
    record = repro(project)
    report = build(project, tmp_path, record)
    assert report.failed
    assert report.stages.failed == "train"
    assert report.stages.cached == ["prepare"]
    assert any("CUDA out of memory" in line for line in report.log_tail)
    text = "\n".join(report.log_tail) + (tmp_path / "bundle" / "report.md").read_text()
    assert "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY" not in text
    assert "AWS_SECRET_ACCESS_KEY=***" in text
    assert report.verdict == "unknown" and report.significance_note is None
    assert (tmp_path / "bundle" / "report.md").read_text().startswith("### Training failed at stage `train`")


def test_the_bundle_is_the_same_read_through_git_or_through_dvcs_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = trained_base(tmp_path / "p")
    set_params(project, quality=0.9)
    record = repro(project)
    collect_from_git(project, resolve(project, "main"))  # the git reader takes this project
    through_git = build(project, tmp_path / "git", record)

    def refuse(*_: object) -> None:
        raise Unsupported("as if the git reader did not mirror this project")

    monkeypatch.setattr(collect_module, "collect_from_git", refuse)
    through_dvc = build(project, tmp_path / "dvc", record)
    assert through_git == through_dvc
    for name in ("report.json", "report.md", "report.html", "loss.png", "confusion_matrix.png"):
        git_file, dvc_file = tmp_path / "git" / "bundle" / name, tmp_path / "dvc" / "bundle" / name
        assert git_file.read_bytes() == dvc_file.read_bytes(), name


CURVE = CurveFigure(
    "Loss", "loss.png", "epoch", [Line("val", [1, 2], [0.5, 0.4])], [Line("val", [1, 2], [0.6, 0.5])]
)
MATRIX = ConfusionFigure("Confusion", "confusion.png", ["a", "b"], [[3, 1], [0, 4]], None)


def test_figures_drawn_on_one_core_are_those_drawn_on_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "several").mkdir()
    (tmp_path / "one").mkdir()
    assert draw_all(tmp_path / "several", [MATRIX, CURVE, CURVE]) == ["confusion.png", "loss.png", "loss.png"]
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert draw_all(tmp_path / "one", [MATRIX, CURVE]) == ["confusion.png", "loss.png"]
    for name in ("confusion.png", "loss.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "several" / name).read_bytes()


def test_what_drawing_raises_in_the_child_is_raised_by_the_build(tmp_path: Path) -> None:
    curve = Curve(title="Loss", x_label="epoch", head=[Series(name="val", x=[1, 2], y=[0.5, 0.4])])
    with Drawer() as drawer:
        drawer.draw(tmp_path / "no such folder", [curve], [])
        with pytest.raises(FileNotFoundError):
            drawer.finish()


def test_an_unknown_base_is_a_clear_error(tmp_path: Path) -> None:
    project = trained_base(tmp_path / "p")
    with pytest.raises(ReportError, match="unknown base revision 'release'"):
        build_report(project, "release", tmp_path / "bundle")


def test_the_cli_builds_the_bundle_and_says_where(tmp_path: Path) -> None:
    project = trained_base(tmp_path / "p")
    set_params(project, quality=0.9)
    log = tmp_path / "repro.log"
    log.write_text(repro(project).log or "")
    result = run(
        [
            "orbit",
            "report",
            "build",
            "--project",
            str(project),
            "--out",
            str(tmp_path / "out"),
            "--repro-log",
            str(log),
            "--started",
            "0",
        ],
        tmp_path,
    )
    assert f"open {tmp_path / 'out' / 'report.html'}" in result.stdout
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["stages"]["ran"] == ["train"]
    assert data["facts"]["duration_seconds"] > 1e9  # since the epoch, as --started 0 says


def test_local_train_runs_the_pipeline_and_writes_the_report(tmp_path: Path) -> None:
    project = trained_base(tmp_path / "p")
    set_params(project, quality=0.9)
    command = ["orbit", "local", "train", "--project", str(project), "--out", str(tmp_path / "r")]
    result = run(command, tmp_path)
    assert "Running stage 'train'" in result.stdout, "dvc repro's output is shown as it runs"
    assert f"report against main: {tmp_path / 'r' / 'report.html'}" in result.stdout
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert (data["stages"]["ran"], data["stages"]["cached"]) == (["train"], ["prepare"])
    assert data["facts"]["duration_seconds"] > 0

    set_params(project, fail=True)
    failed = run(command, tmp_path, check=False)
    assert failed.returncode == 1
    assert json.loads((tmp_path / "r" / "report.json").read_text())["stages"]["failed"] == "train"
