"""Reading params, metrics and plots through git and the DVC cache gives what DVC's API gives.

Each test builds a real DVC project and compares `collect_from_git` with `collect_with_dvc` (DVC's
`params.show`, `metrics.show`, `plots.show`); where the git reader refuses a project, `collect`
must fall back to DVC and give DVC's result.
"""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.report.build import resolve
from runner.report.collect import Collected, collect, collect_with_dvc
from runner.report.gitcollect import Unsupported, collect_from_git
from tests.conftest import REPO, run

pytestmark = pytest.mark.slow

HISTORY = "epoch,loss,acc\n1,0.9,0.5\n2,0.5,0.7\n"
CONFUSION = "actual,predicted\na,a\na,b\nb,b\n"


def git_commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", message], project)


def dvc_project(root: Path, dvc_yaml: dict[str, Any], files: dict[str, str]) -> Path:
    """Create a git repository with DVC, a dvc.yaml and files, committed on main."""
    root.mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], root)
    run(["dvc", "init", "-q"], root)
    write(root, {"dvc.yaml": yaml.safe_dump(dvc_yaml, sort_keys=False), **files})
    git_commit(root, "base")
    return root


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def same_as_dvc(project: Path) -> Collected:
    """Assert that git's reading of the workspace against main equals DVC's, and return it."""
    base_commit = resolve(project, "main")
    from_git = collect_from_git(project, base_commit)
    assert from_git == collect_with_dvc(project, base_commit)
    return from_git


def test_the_real_pipelines_outputs_read_as_dvc_reads_them(tmp_path: Path) -> None:
    project = tmp_path / "project"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(project)], check=True)
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("train:\n", "train:\n  new_key: 1\n", 1))
    metrics = json.loads((project / "evaluation/metrics.json").read_text())
    (project / "evaluation/metrics.json").write_text(json.dumps({**metrics, "val_acc": 0.5}))
    collected = same_as_dvc(project)
    assert collected.head.params["params.yaml"]["train.new_key"] == 1
    assert "train.new_key" not in collected.base.params["params.yaml"]
    assert collected.head.metrics["evaluation/metrics.json"]["val_acc"] == 0.5
    assert collected.base.metrics["evaluation/metrics.json"]["val_acc"] == metrics["val_acc"]
    assert list(collected.definitions) == ["Loss", "Accuracy", "Confusion matrix"]
    assert collected.images == ["evaluation/plots/predictions.png"]
    assert set(collected.base.plot_rows) == {"evaluation/history.csv", "evaluation/confusion.csv"}


PLOT_SHAPES: dict[str, Any] = {
    "stages": {
        "train": {
            "cmd": "echo ${train.lr} is interpolated in a command",
            "params": ["train.lr", {"custom.yaml": ["model.depth", "missing.key"]}, {"whole.json": []}],
            "outs": [{"out/preview.png": {"cache": False}}],
            "metrics": [{"out/metrics.json": {"cache": False}}, {"out/scores.yaml": {"cache": False}}],
            "plots": [
                {"out/history.csv": {"cache": False, "x": "epoch", "y": "loss"}},
                {"out/rows.json": {"cache": False}},
                {"out/table.tsv": {"cache": False, "template": "scatter"}},
                {"out/confusion.png": {"cache": False}},
            ],
        }
    },
    "params": ["extra/params.yaml"],
    "metrics": ["out/more.json"],
    "plots": [
        {
            "Both": {
                "x": {"out/history.csv": "epoch"},
                "y": {"out/history.csv": ["loss", "acc"], "./out/rows.json": "v"},
            }
        },
        {"Matrix": {"template": "confusion", "x": "predicted", "y": {"out/confusion.csv": "actual"}}},
        "out/history.csv",
        {"out/table.tsv": {"y": "b"}},
        "out/preview.png",
        {"Absent": {"y": {"out/never.csv": "a"}}},
    ],
}
SHAPE_FILES = {
    "params.yaml": "train:\n  lr: 1e-3\n  flag: yes\n  on: off\nother: [1, 2]\n",
    "custom.yaml": "model:\n  depth: 3\n  width: 8\nignored: true\n",
    "whole.json": '{"a": {"b": 1}, "c": [1, 2]}',
    "extra/params.yaml": "seed: 1\n",
    "out/metrics.json": '{"acc": 0.5, "nested": {"f1": 0.4, "list": [1, 2], "none": null}, "ok": true}',
    "out/scores.yaml": "loss: 0.25\nname: run\n",
    "out/more.json": "[1, 2]",
    "out/history.csv": HISTORY,
    "out/rows.json": '[{"v": 1}, {"v": 2}]',
    "out/table.tsv": "a\tb\n1\t2\n",
    "out/confusion.csv": CONFUSION,
    "out/preview.png": "not really a png",
}


def test_plot_params_and_metrics_shapes_read_as_dvc_reads_them(tmp_path: Path) -> None:
    project = dvc_project(tmp_path / "p", PLOT_SHAPES, SHAPE_FILES)
    changed = {"custom.yaml": "model:\n  depth: 4\n", "out/history.csv": HISTORY + "3,0.2,0.9\n"}
    write(project, {**changed, "out/table.tsv": "a\tb\n"})
    (project / "out/rows.json").unlink()
    collected = same_as_dvc(project)
    assert collected.head.params["custom.yaml"] == {"model.depth": 4}
    assert collected.base.params["params.yaml"]["train.lr"] == 0.001, "YAML 1.2, as DVC reads it"
    assert set(collected.definitions) == {"Both", "Matrix", "Absent"}
    assert collected.images == ["out/confusion.png", "out/preview.png"]
    assert "out/rows.json" in collected.base.plot_rows and "out/rows.json" not in collected.head.plot_rows
    assert "out/table.tsv" in collected.base.plot_rows and "out/table.tsv" not in collected.head.plot_rows


def test_a_first_run_reads_as_dvc_reads_it(tmp_path: Path) -> None:
    project = dvc_project(tmp_path / "p", PLOT_SHAPES, {"params.yaml": "train:\n  lr: 1\n"})
    write(project, SHAPE_FILES)
    collected = same_as_dvc(project)
    assert collected.base.metrics == {} and collected.base.plot_rows == {}
    assert collected.head.metrics["out/metrics.json"] == {"acc": 0.5, "nested.f1": 0.4, "ok": True}


def cached_metrics_project(root: Path) -> Path:
    """Return a project whose metrics file DVC caches (it is not in git), run once on main."""
    stage = {
        "cmd": "python make.py",
        "deps": ["make.py"],
        "params": ["q"],
        "metrics": ["metrics.json"],
        "plots": ["history.csv"],
    }
    script = (
        "import json, yaml\nq = yaml.safe_load(open('params.yaml'))['q']\n"
        "json.dump({'acc': q}, open('metrics.json', 'w'))\n"
        "open('history.csv', 'w').write(f'epoch,acc\\n1,{q}\\n')\n"
    )
    files = {"make.py": script, "params.yaml": "q: 0.5\n"}
    project = dvc_project(root, {"stages": {"train": stage}}, files)
    run(["dvc", "repro", "-q"], project)
    git_commit(project, "base run")
    write(project, {"params.yaml": "q: 0.75\n"})
    run(["dvc", "repro", "-q"], project)
    return project


def test_a_cached_metrics_file_is_read_from_the_dvc_cache_by_the_base_lock(tmp_path: Path) -> None:
    project = cached_metrics_project(tmp_path / "p")
    assert run(["git", "ls-files", "metrics.json"], project).stdout == "", "not in git: in the cache"
    collected = same_as_dvc(project)
    assert collected.base.metrics == {"metrics.json": {"acc": 0.5}}
    assert collected.head.metrics == {"metrics.json": {"acc": 0.75}}
    assert collected.base.plot_rows == {"history.csv": [{"epoch": "1", "acc": "0.5"}]}


def test_a_cached_base_file_missing_from_the_cache_is_left_to_dvc(tmp_path: Path) -> None:
    project = cached_metrics_project(tmp_path / "p")
    base_lock = yaml.safe_load(run(["git", "show", "main:dvc.lock"], project).stdout)
    md5 = next(out["md5"] for out in base_lock["stages"]["train"]["outs"] if out["path"] == "metrics.json")
    (project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink()
    with pytest.raises(Unsupported, match="not in the DVC cache"):
        collect_from_git(project, resolve(project, "main"))
    assert collect(project, resolve(project, "main")) == collect_with_dvc(project, resolve(project, "main"))


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"params.yaml": "train: [\n"}, "YAML that does not parse"),
        ({"out/metrics.json": "{not json"}, "JSON that does not parse"),
        ({"params.yaml": "- a list\n"}, "params.yaml that is not a mapping"),
        ({"params.yaml": "when: 2024-01-01\n"}, "a value of type date in params.yaml"),
        ({"sub/dvc.yaml": "stages: {}\n"}, "nested pipeline"),
        ({".dvcignore": "out/\n"}, "patterns in .dvcignore"),
        ({"out/history.csv/inner.csv": HISTORY}, "directory"),
        ({"out/preview.png/inner.png": "an image"}, "plot out/preview.png is a directory"),
    ],
)
def test_what_git_reading_does_not_mirror_is_left_to_dvc(
    tmp_path: Path, files: dict[str, str], reason: str
) -> None:
    project = dvc_project(tmp_path / "p", PLOT_SHAPES, SHAPE_FILES)
    for name in files:
        for parent in Path(name).parents:
            if (project / parent).is_file():
                (project / parent).unlink()  # it becomes a directory
    write(project, files)
    base_commit = resolve(project, "main")
    with pytest.raises(Unsupported, match=reason):
        collect_from_git(project, base_commit)
    assert collect(project, base_commit) == collect_with_dvc(project, base_commit)


def test_a_templated_pipeline_is_left_to_dvc(tmp_path: Path) -> None:
    templated = {"stages": {"train": {"cmd": "true", "metrics": [{"${out}/metrics.json": {"cache": False}}]}}}
    project = dvc_project(
        tmp_path / "p", templated, {"params.yaml": "out: out\n", "out/metrics.json": '{"a": 1}'}
    )
    with pytest.raises(Unsupported, match="interpolated"):
        collect_from_git(project, resolve(project, "main"))
    assert collect(project, resolve(project, "main")).head.metrics == {"out/metrics.json": {"a": 1}}


def test_the_remote_is_named_as_dvcs_config_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "user-config"
    write(
        user, {"config": "[core]\n    remote = Shared\n['remote \"shared\"']\n    url = s3://bucket/path\n"}
    )
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(user))
    project = dvc_project(tmp_path / "p", PLOT_SHAPES, SHAPE_FILES)
    assert same_as_dvc(project).remote == "shared (s3://bucket/path)"
    write(
        project, {".dvc/config.local": "[core]\n    remote = mine\n['remote \"mine\"']\n    url = ../store\n"}
    )
    assert same_as_dvc(project).remote == f"mine ({project / 'store'})"


def test_a_base_lock_whose_md5_is_a_path_reads_nothing_outside_the_cache(tmp_path: Path) -> None:
    project = cached_metrics_project(tmp_path / "p")
    (tmp_path / "secret.json").write_text('{"acc": 0.99}')
    head = {name: (project / name).read_text() for name in ("dvc.lock", "params.yaml")}
    run(["git", "checkout", "--", "dvc.lock", "params.yaml"], project)  # the base's, to forge
    base_lock = (project / "dvc.lock").read_text()
    md5 = next(
        out["md5"]
        for out in yaml.safe_load(base_lock)["stages"]["train"]["outs"]
        if out["path"] == "metrics.json"
    )
    (project / "dvc.lock").write_text(base_lock.replace(md5, "../../../../../secret.json"))
    git_commit(project, "a lock naming a file outside the cache")
    write(project, head)
    with pytest.raises(Unsupported, match="no file md5"):
        collect_from_git(project, resolve(project, "main"))
