"""`orbit local`: steps run with this environment's tools, whatever the caller's PATH."""

import sys
from pathlib import Path

import pytest

from bot.processes import LocalRunError, run_step


def test_steps_find_this_environments_python_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as from `make demo`, outside the venv
    script = f"import sys; open({str(tmp_path / 'prefix')!r}, 'w').write(sys.prefix)"
    run_step("which python", ["python", "-c", script], tmp_path)
    assert (tmp_path / "prefix").read_text() == sys.prefix


def test_a_failing_step_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(LocalRunError, match="exit code 3"):
        run_step("fail", ["python", "-c", "raise SystemExit(3)"], tmp_path)
