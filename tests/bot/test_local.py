"""`orbit local`: steps run with this environment's tools, say what they do and how long they took.

`orbit local serve` makes sure the model is there before it builds the Bento: pulled from the DVC
remote, else trained. Here the tools are fakes that log how they were called; the real path, from a
fresh clone, is in test_fresh_clone.py.
"""

import re
import socket
import sys
from pathlib import Path

import pytest

import bot.local
import runner.report.local
from bot.local import MODEL_FILE, ensure_model, serve
from bot.processes import LocalRunError, free_port, run_step, stream_stages

DONE = r"done in \d+(\.\d)? s"  # a step's time, as people read it
FAKE_DVC = """#!{python}
import json, pathlib, sys, time
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(" ".join(args) + "\\n")
model = pathlib.Path({model!r})
if args[0] == "status":
    print(json.dumps({status}))
elif args[0] == "pull":
    if not {pull_works}:
        print("ERROR: failed to pull data from the cloud", file=sys.stderr)
        sys.exit(1)
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("pulled")
elif args[0] == "repro":
    for stage in ("prepare", "train"):
        print(f"Running stage '{{stage}}':")
        print(f"> python -m model.{{stage}}", flush=True)
        time.sleep(0.05)
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("trained")
    print("Updating lock file 'dvc.lock'")
"""
STALE = {"train": [{"changed deps": {"params.yaml": {"modified": "train.lr"}}}]}


class FakeDvc:
    """A `dvc` that logs its arguments: its pull works or fails, its status says current or stale."""

    def __init__(self, project: Path, *, pull_works: bool, status: object) -> None:
        self.log = project.parent / "dvc-calls"
        self.path = project.parent / "bin" / "dvc"
        self.path.parent.mkdir(exist_ok=True)
        self.path.write_text(
            FAKE_DVC.format(
                python=sys.executable,
                log=str(self.log),
                model=str(project / MODEL_FILE),
                status=repr(status),
                pull_works=pull_works,
            )
        )
        self.path.chmod(0o755)

    def calls(self) -> list[str]:
        """Return each call's arguments, in order."""
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Return a model project with its pipeline but none of its outputs, as a fresh clone has it."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    return root


@pytest.fixture
def imported(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the projects whose model would be imported into the BentoML store."""
    projects: list[Path] = []
    monkeypatch.setattr(bot.local, "import_model", projects.append)
    return projects


def fake_dvc(monkeypatch: pytest.MonkeyPatch, project: Path, *, pull_works: bool, status: object) -> FakeDvc:
    """Put a fake `dvc` where `orbit local` looks for its tools."""
    fake = FakeDvc(project, pull_works=pull_works, status=status)
    monkeypatch.setattr(bot.local, "tool", lambda name: str(fake.path) if name == "dvc" else name)
    return fake


def progress(output: str) -> list[str]:
    """Return the progress lines of an output."""
    return [line for line in output.splitlines() if line.startswith("==> ")]


def in_order(lines: list[str], patterns: list[str]) -> bool:
    """Return whether each pattern matches a line, each after the one before."""
    remaining = iter(lines)
    return all(any(re.search(pattern, line) for line in remaining) for pattern in patterns)


def test_steps_find_this_environments_python_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as from `make demo`, outside the venv
    script = f"import sys; open({str(tmp_path / 'prefix')!r}, 'w').write(sys.prefix)"
    run_step("which python", ["python", "-c", script], tmp_path)
    assert (tmp_path / "prefix").read_text() == sys.prefix


def test_a_failing_step_names_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(LocalRunError, match="exit code 3"):
        run_step("fail", ["python", "-c", "raise SystemExit(3)"], tmp_path)
    assert re.fullmatch(r"==> fail: failed after \d+\.\d s", progress(capsys.readouterr().out)[-1])


def test_a_step_says_when_it_starts_and_how_long_it_took(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_step("waiting", ["python", "-c", "import time; time.sleep(0.2)"], tmp_path)
    lines = progress(capsys.readouterr().out)
    assert lines[0] == "==> waiting (python -c 'import time; time.sleep(0.2)')"
    assert re.fullmatch(r"==> waiting: done in 0\.[2-9] s", lines[1])


def test_each_dvc_stage_is_timed_as_it_ends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeDvc(tmp_path / "project", pull_works=True, status={})
    finished = stream_stages("training", [str(fake.path), "repro"], tmp_path)
    lines = progress(capsys.readouterr().out)
    assert finished.returncode == 0
    assert "Running stage 'train':" in finished.output  # DVC's own output is kept, for the report
    assert [re.sub(DONE, "done", line) for line in lines] == [
        "==> prepare: started",
        "==> prepare: done",
        "==> train: started",
        "==> train: done",
        "==> training: done",
    ]


def test_a_missing_model_is_pulled_then_trained_when_the_pull_fails(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], imported: list[Path]
) -> None:
    fake = fake_dvc(monkeypatch, project, pull_works=False, status=STALE)
    ensure_model(project)
    assert fake.calls() == ["pull", "repro train"]
    assert imported == [project]
    assert in_order(
        progress(capsys.readouterr().out),
        [
            r"^==> pulling the model \(dvc pull\)$",
            r"^==> pulling the model: failed after",
            r"exit code 1: training the model here instead$",
            r"^==> training \(dvc repro train\): about a minute on two cores$",
            rf"^==> train: {DONE}$",
            rf"^==> training: {DONE}$",
        ],
    )


def test_a_pulled_model_that_is_current_is_not_trained_again(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], imported: list[Path]
) -> None:
    fake = fake_dvc(monkeypatch, project, pull_works=True, status={})
    ensure_model(project)
    assert fake.calls() == ["pull", "status --json --with-deps train"]
    assert imported == [project]
    assert in_order(
        progress(capsys.readouterr().out), [r"^==> pulling the model", rf"^==> pulling the model: {DONE}$"]
    )


def test_a_pulled_model_older_than_the_working_tree_is_trained_again(
    project: Path, monkeypatch: pytest.MonkeyPatch, imported: list[Path]
) -> None:
    fake = fake_dvc(monkeypatch, project, pull_works=True, status=STALE)
    ensure_model(project)
    assert fake.calls() == ["pull", "status --json --with-deps train", "repro train"]


def test_a_current_model_is_only_imported(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], imported: list[Path]
) -> None:
    fake = fake_dvc(monkeypatch, project, pull_works=False, status={})
    (project / MODEL_FILE).parent.mkdir()
    (project / MODEL_FILE).write_text("trained before")
    ensure_model(project)
    assert fake.calls() == ["status --json --with-deps train"]
    assert imported == [project]
    assert "==> the model is up to date (model/classifier.bentomodel)" in progress(capsys.readouterr().out)


def test_serve_outside_a_model_project_names_project_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_dvc(monkeypatch, tmp_path / "project", pull_works=True, status={})
    with pytest.raises(
        LocalRunError, match=r"^--project .* has no dvc\.yaml: run from the model project's root"
    ):
        serve(tmp_path, free_port())
    assert fake.calls() == []


def test_serve_on_a_taken_port_names_port_before_any_work(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_dvc(monkeypatch, project, pull_works=True, status={})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalRunError, match=rf"^--port {port} is taken .*pass another --port$"):
            serve(project, port)
    with pytest.raises(LocalRunError, match=r"^--port 70000 is not a TCP port"):
        serve(project, 70000)
    assert fake.calls() == []


def test_local_train_times_each_stage_and_keeps_dvcs_output_for_the_report(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeDvc(project, pull_works=True, status={})
    monkeypatch.setattr(runner.report.local, "tool", lambda name: str(fake.path))
    record = runner.report.local.repro(project)
    assert fake.calls() == ["repro"]
    assert in_order(
        progress(capsys.readouterr().out),
        [r"^==> training the pipeline \(dvc repro in ", r"^==> prepare: started$", rf"^==> train: {DONE}$"],
    )
    assert record.log is not None and "==>" not in record.log  # the report shows what DVC printed
    assert record.duration_seconds is not None and record.duration_seconds > 0.1
