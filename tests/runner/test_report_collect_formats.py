"""The git reader's parsing of params, metrics and plot files is DVC's, function by function."""

from pathlib import Path
from typing import Any

import pytest
from dvc.dependency import _merge_params
from dvc.dependency.param import read_param_file
from dvc.fs import LocalFileSystem
from dvc.repo.metrics.show import _extract_metrics
from dvc.repo.plots import parse

from runner.report.dvcformats import Unsupported, extract_metrics, load_rows, load_values, select_params
from runner.report.gitfiles import CommitFiles
from runner.report.pipeline import merge_params
from tests.conftest import run

PARAMS = "train:\n  lr: 1e-3\n  layers: [1, 2]\n  deep:\n    a: 1\n    b: 'no'\nseed: 7\nflag: on\n"


@pytest.mark.parametrize(
    "values",
    [
        {"acc": 0.5, "f1": {"a": 1, "b": None, "c": [1, 2], "d": {}}, "ok": True, "name": "x"},
        [1, 2],
        3,
        {},
        {"nested": {"deeper": {"empty": {}}}},
    ],
)
def test_metrics_keep_what_dvc_keeps(values: Any) -> None:
    assert (extract_metrics(values) or {}) == (_extract_metrics(values, "metrics.json") or {})


@pytest.mark.parametrize(
    "keys", [[], ["train"], ["train.lr", "seed"], ["train.deep.b", "train.deep"], ["missing", "train.nope"]]
)
def test_params_keys_select_what_dvc_selects(tmp_path: Path, keys: list[str]) -> None:
    (tmp_path / "params.yaml").write_text(PARAMS)
    ours = select_params(load_values("params.yaml", PARAMS.encode()), keys)
    assert ours == read_param_file(LocalFileSystem(), str(tmp_path / "params.yaml"), keys)


def test_a_glob_in_a_params_key_is_left_to_dvc() -> None:
    with pytest.raises(Unsupported, match="glob"):
        select_params({"a": {"b": 1}}, ["a.*"])


@pytest.mark.parametrize(
    "entries",
    [
        [{"params.yaml": ["a"]}, {"params.yaml": ["b"]}, {"other.yaml": ["c"]}],
        [{"params.yaml": ["a"]}, {"params.yaml": []}],
        ["a", {"custom.json": []}, {"custom.json": ["x"]}],
    ],
)
def test_params_entries_merge_as_dvc_merges_them(entries: list[Any]) -> None:
    assert merge_params(entries) == dict(_merge_params(entries))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("h.csv", "epoch,loss\n1,0.5\n2,0.25\n"),
        ("h.tsv", "epoch\tloss\n1\t0.5\n"),
        ("h.json", '[{"epoch": 1, "loss": 0.5}]'),
        ("h.yaml", "- epoch: 1\n  loss: 0.5\n"),
        ("h.csv", "\ufeffepoch,loss\n1,2\n"),
    ],
)
def test_plot_rows_parse_as_dvc_parses_them(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    theirs = parse(LocalFileSystem(), str(tmp_path / name), props={})
    assert load_rows(name, text.encode(), header=True) == theirs["data"]


def test_a_commit_reads_files_missing_paths_and_refuses_directories(tmp_path: Path) -> None:
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    binary = bytes(range(256)) + b"\n\nend"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.bin").write_bytes(binary)
    (tmp_path / "name with spaces.txt").write_text("spaced\n")
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-q", "-m", "files"], tmp_path)
    commit = run(["git", "rev-parse", "HEAD"], tmp_path).stdout.strip()
    with CommitFiles(tmp_path, commit) as files:
        assert files.read("sub/data.bin") == binary
        assert files.read("nothing here.txt") is None
        assert files.read("name with spaces.txt") == b"spaced\n"
        with pytest.raises(Unsupported, match="is a tree"):
            files.read("sub")
        assert files.read("sub/data.bin") == binary, "the process still answers after a refusal"
