"""Every `orbit` command explains itself and fails clearly: one line naming what to fix, a non-zero status."""

import argparse
import json
import logging
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.cli import build_parser, main
from runner.report import build as report_build
from runner.report import local as report_local
from runner.report.build import RunRecord
from runner.report.bundle import Facts, MetricRow, Report, Stages
from tests.bot.test_bot_process import ORBIT, PEM

UNREACHABLE_POSTGRES = "postgresql+psycopg://orbit:s3cr3t-password@127.0.0.1:9/orbit"  # port 9: refused


def git_project(folder: Path) -> Path:
    """Return a model project with one commit on `main`: a dvc.yaml and a .dvc folder."""
    folder.mkdir()
    (folder / ".dvc").mkdir()
    (folder / "dvc.yaml").write_text("stages: {}\n")
    for command in (["init", "-q", "-b", "main"], ["add", "dvc.yaml"], ["commit", "-q", "-m", "start"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *command], cwd=folder, check=True
        )
    return folder


def subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Yield the parser and every parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from subparsers(child)


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"orbit {metadata.version('orbit')}"


def test_every_command_shows_its_defaults_in_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapped inside a default
    parsers = list(subparsers(build_parser()))
    assert len(parsers) > 15
    for parser in parsers:
        formatter = parser.formatter_class
        assert isinstance(formatter, type), parser.prog
        assert issubclass(formatter, argparse.ArgumentDefaultsHelpFormatter), parser.prog
        text = parser.format_help()
        for action in parser._actions:
            if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
                assert action.help, f"{parser.prog} {action.option_strings[0]} has no help"
                assert f"(default: {action.default})" in text, f"{parser.prog} {action.option_strings[0]}"


def test_a_bad_argument_is_one_line_naming_it_and_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["inbox", "list", "--limit", "0"])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "orbit inbox list: argument --limit: '0' is not a whole number above zero"
        " (see orbit inbox list --help)"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["report", "build", "--project", "nowhere"], "argument --project: no folder 'nowhere' here"),
        (["report", "build", "--project", "."], "argument --project: '.' is not in a DVC project"),
        (["report", "build", "--repro-log", "no.log"], "argument --repro-log: no file 'no.log' here"),
        (["local", "train", "--project", "."], "argument --project: '.' has no dvc.yaml"),
        (["local", "serve", "--project", "nowhere"], "argument --project: no folder 'nowhere' here"),
        (
            ["deploy", "build", "--registry", "r", "--sha", "s", "--project", "nowhere"],
            "--project: no folder",
        ),
        (["app", "register", "--webhook-url", "https://x/webhook"], "argument --manifest: no file"),
        (["dev", "--every", "0"], "argument --every: '0' is not a number of seconds above zero"),
        (["serve", "--workers", "none"], "argument --workers: 'none' is not a whole number above zero"),
    ],
)
def test_paths_and_numbers_are_checked_before_any_work(
    argv: list[str],
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no .dvc, no dvc.yaml, no .github/app.yml here or above
    if "--repro-log" in argv:
        (tmp_path / ".dvc").mkdir()
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert says in line


def test_local_train_refuses_an_unknown_base_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trained: list[Path] = []

    def repro(project: Path) -> RunRecord:
        trained.append(project)
        return RunRecord()

    monkeypatch.setattr(report_local, "repro", repro)
    project = git_project(tmp_path / "p")
    assert main(["local", "train", "--base", "nope", "--project", str(project)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("orbit: unknown base revision 'nope'")
    assert "git fetch origin nope" in line
    assert trained == [], "dvc repro never started"


def test_report_build_refuses_an_unknown_base_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = git_project(tmp_path / "p")
    assert (
        main(["report", "build", "--base", "nope", "--project", str(project), "--out", str(tmp_path / "r")])
        == 1
    )
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("orbit: unknown base revision 'nope'")


def built(failed: str | None) -> Report:
    return Report(
        facts=Facts(commit="a" * 40, base_ref="main", base_commit="b" * 40),
        stages=Stages(ran=["train"], failed=failed),
        metrics=[MetricRow(path="metrics.json", key="accuracy", base=0.8, head=0.9, sense="higher")],
    )


@pytest.fixture
def dvc_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that passes the argument checks; `build_report` is replaced by `built`."""
    (tmp_path / ".dvc").mkdir()
    monkeypatch.setattr(
        report_build, "build_report", lambda project, base, out, run: built(run.log and "train")
    )
    return tmp_path


def test_report_build_of_a_failed_pipeline_exits_non_zero(
    dvc_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dvc_project / "repro.log").write_text("ERROR: failed to reproduce 'train'\n")
    argv = ["report", "build", "--project", str(dvc_project), "--repro-log", str(dvc_project / "repro.log")]
    assert main(argv) == 1
    assert "stage train failed" in capsys.readouterr().out
    assert main(argv[:4]) == 0  # the same without a failed stage


def test_report_build_json_is_what_a_program_reads(
    dvc_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = dvc_project / "bundle"
    assert main(["report", "build", "--project", str(dvc_project), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["commit"] == "a" * 40
    assert (summary["base"], summary["base_commit"], summary["failed_stage"]) == ("main", "b" * 40, None)
    assert [(m["key"], m["base"], m["head"]) for m in summary["metrics"]] == [("accuracy", 0.8, 0.9)]
    assert summary["paths"] == {name: str(out / f"report.{name}") for name in ("json", "md", "html")}

    (dvc_project / "repro.log").write_text("failed\n")
    argv = ["report", "build", "--project", str(dvc_project), "--repro-log", str(dvc_project / "repro.log")]
    assert main([*argv, "--json"]) == 1
    failed = json.loads(capsys.readouterr().out)
    assert (failed["failed_stage"], failed["metrics"]) == ("train", [])


def broken(*_: Any) -> Report:
    raise ZeroDivisionError("float division by zero")


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_an_unexpected_failure_is_one_line_unless_debug_asks_for_the_traceback(
    dvc_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], debug: list[str]
) -> None:
    monkeypatch.setattr(report_build, "build_report", broken)
    assert main(["report", "build", "--project", str(dvc_project), *debug]) == 1
    err = capsys.readouterr().err
    if debug:
        assert "Traceback (most recent call last)" in err
        assert err.splitlines()[-1] == "orbit: ZeroDivisionError: float division by zero"
    else:
        assert err.splitlines() == [
            "orbit: ZeroDivisionError: float division by zero (run again with --debug for the traceback)"
        ]


def test_debug_goes_before_the_command_or_after_it() -> None:
    assert build_parser().parse_args(["--debug", "report", "build"]).debug is True
    assert build_parser().parse_args(["report", "build", "--debug"]).debug is True
    assert not hasattr(build_parser().parse_args(["report", "build"]), "debug")


@pytest.mark.parametrize("argv", [["inbox", "list"], ["inbox", "list", "--json"], ["inbox", "retry", "1"]])
def test_the_inbox_commands_create_no_database(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORBIT_DATABASE_URL", raising=False)
    assert main(argv) == 1
    assert capsys.readouterr().err.splitlines() == [
        "orbit: no inbox at sqlite:///orbit.db (ORBIT_DATABASE_URL): the bot has not run here"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_database_without_the_inbox_tables_is_named_and_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE unrelated (id INTEGER)")
    monkeypatch.setenv("ORBIT_DATABASE_URL", url)
    assert main(["inbox", "list"]) == 1
    assert "the database has no inbox tables (`orbit serve` creates them" in capsys.readouterr().err
    assert sa.inspect(engine).get_table_names() == ["unrelated"]


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        (
            "orbit.db",
            2,
            "orbit: ORBIT_DATABASE_URL is not a database URL; give one such as sqlite:///orbit.db",
        ),
        ("postgres://orbit:s3cr3t-password@db/orbit", 2, "SQLAlchemy has no driver for (postgres://)"),
        (
            UNREACHABLE_POSTGRES,
            1,
            "orbit: ORBIT_DATABASE_URL: cannot connect to postgresql+psycopg://orbit:***@",
        ),
    ],
)
@pytest.mark.parametrize("argv", [["inbox", "list"], ["inbox", "retry", "3"]])
def test_a_bad_or_unreachable_database_is_one_line_naming_the_variable(
    url: str,
    status: int,
    says: str,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ORBIT_DATABASE_URL", url)
    assert main(argv) == status
    (line,) = capsys.readouterr().err.splitlines()
    assert says in line
    assert "s3cr3t-password" not in line


@pytest.fixture
def serve_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """A valid configuration for `orbit serve`; yields the calls uvicorn got (it is never started)."""
    import uvicorn

    for name in ("ORBIT_REGISTRY", "ORBIT_PUBLIC_DOMAIN", "ORBIT_GITHUB_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORBIT_GITHUB_APP_ID", "1")
    monkeypatch.setenv("ORBIT_GITHUB_PRIVATE_KEY", PEM)
    monkeypatch.setenv("ORBIT_WEBHOOK_SECRET", "secret")
    monkeypatch.setenv("ORBIT_DATABASE_URL", f"sqlite:///{tmp_path / 'orbit.db'}")
    monkeypatch.setenv("ORBIT_LOG_FORMAT", "text")
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(options))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield started
    root.handlers[:], root.level = handlers, level  # `orbit serve` configured the process's logging


def test_serve_logs_each_warning_at_start(
    serve_env: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ORBIT_REGISTRY", "ghcr.io/octo-org")
    monkeypatch.setenv("ORBIT_WEBHOOK_SECRT", "typo")
    assert main(["serve"]) == 0
    assert len(serve_env) == 1
    err = capsys.readouterr().err
    assert "ORBIT_REGISTRY is set but ORBIT_PUBLIC_DOMAIN is not: deploys stay off" in err
    assert "ORBIT_WEBHOOK_SECRT is not a setting orbit knows; did you mean ORBIT_WEBHOOK_SECRET?" in err
    assert len([line for line in err.splitlines() if "WARNING" in line]) == 2
    assert not (tmp_path / "orbit.db").exists(), "the check creates nothing: the bot does, once it starts"


@pytest.mark.parametrize(
    ("name", "value", "status", "says"),
    [
        (
            "ORBIT_GITHUB_PRIVATE_KEY",
            "s3cr3t-password",
            2,
            "ORBIT_GITHUB_PRIVATE_KEY is not a PEM private key",
        ),
        ("ORBIT_DATABASE_URL", "orbit.db", 2, "ORBIT_DATABASE_URL is not a database URL"),
        ("ORBIT_DATABASE_URL", UNREACHABLE_POSTGRES, 1, "ORBIT_DATABASE_URL: cannot connect to"),
        ("ORBIT_DATABASE_URL", "sqlite:///" + __file__, 1, "cannot connect to sqlite:///"),  # no database
        (
            "ORBIT_DATABASE_URL",
            "sqlite:////nonexistent/orbit.db",
            1,
            "create sqlite:////nonexistent/orbit.db: no folder",
        ),
    ],
)
def test_serve_stops_at_start_with_one_line_on_a_bad_key_or_database(
    serve_env: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    status: int,
    says: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["serve"]) == status
    (line,) = capsys.readouterr().err.splitlines()
    assert says in line
    assert "s3cr3t-password" not in line
    assert serve_env == [], "uvicorn never started"


@pytest.mark.slow
def test_the_installed_command_fails_in_one_line_with_a_status(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no ORBIT_* variable: the defaults
    listed = subprocess.run(
        [ORBIT, "inbox", "list"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert (listed.returncode, listed.stdout) == (1, "")
    assert listed.stderr.splitlines() == [
        "orbit: no inbox at sqlite:///orbit.db (ORBIT_DATABASE_URL): the bot has not run here"
    ]
    assert list(tmp_path.iterdir()) == []
    version = subprocess.run([ORBIT, "--version"], env=env, capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"orbit {metadata.version('orbit')}"
