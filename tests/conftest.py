"""Shared fixtures: an isolated BentoML store, and temporary copies of this repository."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from bot.processes import tool_environment

# Every test process gets its own model store, set before BentoML is first imported.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="orbit-bentoml-")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
for key, value in {
    "GIT_AUTHOR_NAME": "orbit tests",
    "GIT_AUTHOR_EMAIL": "tests@orbit.invalid",
    "GIT_COMMITTER_NAME": "orbit tests",
    "GIT_COMMITTER_EMAIL": "tests@orbit.invalid",
}.items():
    os.environ.setdefault(key, value)

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Small enough to train in seconds, large enough to learn the classes.
TINY_PARAMS: dict[str, dict[str, object]] = {
    "generate": {"seed": 42, "images_per_class": 30, "image_size": 64},
    "prepare": {"seed": 77, "split": 0.2, "image_size": [32, 32], "grayscale": False, "batch_size": 16},
    "train": {"seed": 77, "lr": 0.005, "epochs": 8, "conv_size": 16, "dense_size": 32, "output_classes": 10},
}


def run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command of the venv (dvc, git, bentoml) and capture its output."""
    executable = BIN / command[0]
    full = [str(executable), *command[1:]] if executable.exists() else command
    result = subprocess.run(
        full, cwd=cwd, env=tool_environment(), capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def copy_project(destination: Path, params: dict[str, dict[str, object]]) -> Path:
    """Copy the tracked files of this repository into a new git repository with `params`."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in listed.splitlines():
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for generated in ("dvc.lock", "evaluation"):
        path = destination / generated
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], destination)
    run(["git", "add", "-A"], destination)
    run(["git", "commit", "-q", "-m", "copy of the model project"], destination)
    return destination


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a copy of the project whose tiny pipeline has run once."""
    project = copy_project(tmp_path_factory.mktemp("project"), TINY_PARAMS)
    run(["dvc", "repro"], project)
    return project


# --- Kubernetes RBAC: what the tests asked of the API doubles is what deploy/k8s grants the bot ---
# Every request to tests/kube_double.py (and its apply routes) is recorded as the RBAC check a real
# API server would make. At the end of the session, an access the rendered RBAC does not grant fails
# the session; when the whole suite ran and passed, so does a grant no test used.

_rbac_deselected: list[int] = [0]


def pytest_deselected(items: list[pytest.Item]) -> None:
    _rbac_deselected[0] += len(items)


def _whole_suite(session: pytest.Session) -> bool:
    """Return whether every test of the suite was selected, ran, and passed."""
    config = session.config
    options = config.option
    testpaths = {(config.rootpath / path).resolve() for path in config.getini("testpaths")}
    chosen = {(config.invocation_params.dir / arg).resolve() for arg in config.args}
    return (
        (config.args_source == pytest.Config.ArgsSource.TESTPATHS or chosen == testpaths)
        and not any("::" in arg for arg in config.args)
        and not getattr(options, "keyword", "")
        and not getattr(options, "markexpr", "")
        and not getattr(options, "lf", False)
        and not getattr(options, "ignore", None)
        and not getattr(options, "ignore_glob", None)
        and not getattr(options, "collectonly", False)
        and _rbac_deselected[0] == 0
        and session.testscollected > 0
        and session.testsfailed == 0
        and not session.shouldfail
        and not session.shouldstop
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.kube_double import ACCESSES, rbac_problems, render

    if not ACCESSES.first_by:
        return
    try:
        missing, unused = rbac_problems(ACCESSES.first_by, render(), _whole_suite(session))
    except (RuntimeError, ValueError, subprocess.CalledProcessError) as error:
        missing, unused = [f"cannot read the RBAC of deploy/k8s: {error}"], []
    if not missing and not unused:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = []
    if missing:
        lines += ["used by the code but not granted by deploy/k8s (a real API server answers 403):"]
        lines += [f"  {line}" for line in missing]
    if unused:
        lines += ["granted by deploy/k8s but used by no test (least privilege: drop it, or test its use):"]
        lines += [f"  {line}" for line in unused]
    if reporter is not None:
        reporter.line("")
        reporter.write_sep("=", "Kubernetes RBAC of the bot", red=True)
        for line in lines:
            reporter.write_line(line)
    else:
        print("\n".join(lines), file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
