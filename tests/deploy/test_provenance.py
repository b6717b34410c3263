"""The provenance deploy.build writes into the Bento, from a project holding this repository's real
dvc.lock, params.yaml and evaluation/metrics.json; the report's link checked before it is written."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.build import main
from deploy.provenance import (
    METADATA_FILE,
    ProvenanceError,
    provenance,
    report_link,
    stage_outputs,
    written_for_build,
)
from tests.conftest import REPO

REPORT = "https://github.com/octo/model/pull/7#issuecomment-42"
REAL_FILES = ("dvc.lock", "params.yaml", "evaluation/metrics.json")


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git checkout holding this repository's dvc.lock, params.yaml and metrics, committed."""
    for name in REAL_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp_path / name)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "project")
    return tmp_path


def test_the_document_holds_the_commit_the_lock_hashes_params_metrics_and_the_link(project: Path) -> None:
    head = git(project, "rev-parse", "HEAD")
    document = provenance(project, head, REPORT)
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    assert document["sha"] == head and document["clean"] is True
    assert document["dvc_lock"] == {
        stage: {out["path"]: out["md5"] for out in body["outs"]} for stage, body in lock["stages"].items()
    }
    assert set(document["dvc_lock"]) == {"generate", "prepare", "train", "evaluate"}
    train_outs = next(body["outs"] for name, body in lock["stages"].items() if name == "train")
    model_md5 = next(out["md5"] for out in train_outs if out["path"] == "model/classifier.bentomodel")
    assert document["dvc_lock"]["train"]["model/classifier.bentomodel"] == model_md5
    assert document["dvc_lock"]["generate"]["data/raw"].endswith(".dir"), "the data, a folder"
    assert document["params"] == yaml.safe_load((REPO / "params.yaml").read_text())
    assert document["metrics"] == json.loads((REPO / "evaluation/metrics.json").read_text())
    assert document["report_url"] == REPORT
    assert json.loads(json.dumps(document, allow_nan=False)) == document


def test_a_tree_changed_since_the_commit_is_recorded_as_not_clean(project: Path) -> None:
    """`dvc repro` in the build job rewrites dvc.lock: the served model is not the commit's alone."""
    (project / "params.yaml").write_text("train: {lr: 0.1}\n")
    document = provenance(project)
    assert document["clean"] is False and document["params"] == {"train": {"lr": 0.1}}
    assert document["report_url"] is None


def test_a_checkout_at_another_commit_than_asked_is_refused(project: Path) -> None:
    with pytest.raises(ProvenanceError, match=f"the checkout is at {git(project, 'rev-parse', 'HEAD')}"):
        provenance(project, "f" * 40)
    with pytest.raises(ProvenanceError, match="is not a commit SHA"):
        provenance(project, "main")


def test_a_project_without_git_or_files_records_nulls(tmp_path: Path) -> None:
    assert provenance(tmp_path, "a" * 40) == {
        "sha": "a" * 40,
        "clean": None,
        "dvc_lock": None,
        "params": None,
        "metrics": None,
        "report_url": None,
    }


def test_nan_metrics_are_recorded_as_null(project: Path) -> None:
    (project / "evaluation/metrics.json").write_text('{"val_loss": NaN, "val_acc": 0.5, "x": [Infinity]}')
    assert provenance(project)["metrics"] == {"val_loss": None, "val_acc": 0.5, "x": [None]}


BAD_FILES = {
    "dvc.lock without stages": ("dvc.lock", "schema: '2.0'\n", "dvc.lock has no `stages` mapping"),
    "dvc.lock, a list": ("dvc.lock", "- a\n", "dvc.lock has no `stages` mapping"),
    "dvc.lock not YAML": ("dvc.lock", "stages: [\n", "dvc.lock is not YAML"),
    "an output without md5": (
        "dvc.lock",
        "stages:\n  train:\n    outs:\n    - path: model/m\n",
        "an output of stage 'train' lacks its path or md5",
    ),
    "outs not a list": ("dvc.lock", "stages:\n  train:\n    outs: 3\n", "stage 'train' has no list"),
    "params, a list": ("params.yaml", "- 1\n", "params.yaml does not hold a mapping"),
    "metrics not JSON": ("evaluation/metrics.json", "{", "evaluation/metrics.json is not JSON"),
    "metrics, a number": ("evaluation/metrics.json", "3", "does not hold a mapping"),
    "params over the cap": ("params.yaml", "a: " + "1" * 1_100_000, "params.yaml is over 1048576 bytes"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_file_that_cannot_be_read_stops_the_build_saying_why(project: Path, case: str) -> None:
    name, text, reason = BAD_FILES[case]
    (project / name).write_text(text)
    with pytest.raises(ProvenanceError, match=re.escape(reason)):
        provenance(project)


def test_a_file_not_utf8_is_refused(project: Path) -> None:
    (project / "params.yaml").write_bytes(b"a: \xff\n")
    with pytest.raises(ProvenanceError, match=re.escape("params.yaml is not UTF-8")):
        provenance(project)


def test_the_stage_outputs_of_a_lock(project: Path) -> None:
    lock = "stages:\n  a:\n    outs:\n    - {path: x, md5: m1}\n    - {path: y, md5: m2.dir}\n  b: {}\n"
    assert stage_outputs(lock) == {"a": {"x": "m1", "y": "m2.dir"}, "b": {}}


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/octo/model/pull/7#issuecomment-42",
        "https://reports.example.com:8443/r/abc?x=1",
        "https://h/" + "a" * 2000,
    ],
)
def test_an_https_link_is_taken(url: str) -> None:
    assert report_link(url) == url


BAD_LINKS = {
    "http": ("http://example.com/r", "must be an https:// URL"),
    "javascript": ("javascript:alert(1)", "must be an https:// URL"),
    "no host": ("https:///r", "must be an https:// URL with a host"),
    "relative": ("/r/1", "must be an https:// URL"),
    "a space": ("https://example.com/a b", "spaces or characters"),
    "a newline": ("https://example.com/a\nb", "spaces or characters"),
    "not ASCII": ("https://exämple.com/", "spaces or characters"),
    "credentials": ("https://user:pw@example.com/", "must not hold credentials"),
    "a port not a number": ("https://example.com:http/", "is not a URL"),
    "a broken IPv6 host": ("https://[::1/", "is not a URL"),
    "too long": ("https://h/" + "a" * 2040, "over 2048 characters"),
}


@pytest.mark.parametrize("case", BAD_LINKS)
def test_a_bad_link_is_refused_saying_why(case: str) -> None:
    url, reason = BAD_LINKS[case]
    with pytest.raises(ProvenanceError, match=re.escape(reason)):
        report_link(url)


def test_an_empty_link_is_none() -> None:
    assert report_link("") is None


def test_the_file_is_there_for_the_build_only_and_replaces_a_link_without_writing_through(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "victim"
    elsewhere.write_text("keep me")
    target = project / METADATA_FILE
    target.parent.mkdir()
    target.symlink_to(elsewhere)  # a pull request's link to a file of the runner
    with written_for_build(project, {"sha": "b" * 40}) as written:
        assert written == target and not target.is_symlink()
        assert json.loads(target.read_text()) == {"sha": "b" * 40}
    assert not target.exists() and not target.is_symlink()
    assert elsewhere.read_text() == "keep me"
    with pytest.raises(RuntimeError), written_for_build(project, {}):
        raise RuntimeError("the build failed")
    assert not target.exists(), "removed when the build fails too"


def test_the_bento_part_refuses_a_bad_link_before_building_anything(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["bento", "--project", str(project), "--out", str(out), "--report-url", "http://x/r"])
    assert code == 1
    assert "the Bento's provenance: the report URL must be an https:// URL" in capsys.readouterr().err
    assert not out.exists() and not (project / METADATA_FILE).exists()
