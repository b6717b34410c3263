"""The dependency locks the images install from pin what pyproject.toml asks for, and the bot's holds no ML.

`requirements/bot.lock` is the bot's image (pyproject's `[project] dependencies`), `runner.lock` the GPU
runner's (those and the `runner` extra, torch with its CUDA libraries), `runner-cpu.lock` the CPU
runner's (the same with torch's CPU build). `scripts/lock` makes them; this checks them without a network.
"""

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
# torch's CUDA build and what only it needs; nvidia-ml-py is NVML's pure-Python binding, BentoML's.
CUDA_ONLY = re.compile(r"^(triton|cuda-.*|nvidia-(?!ml-py$).*)$")
RUNNER_ONLY = {"torch", "numpy", "pillow", "matplotlib", "bentoml", "dvc", "dvc-s3", "triton"}


def pins(lock: str) -> dict[str, Version]:
    """Return each package the lock pins, by canonical name, with its version."""
    found: dict[str, Version] = {}
    for line in (LOCKS / lock).read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match[1])
            assert name not in found, f"{lock} pins {name} twice"
            found[name] = Version(match[2])
    return found


def wanted(*extras: str) -> list[Requirement]:
    """Return what pyproject.toml requires of the base, the extras and the build backend."""
    texts = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
    for extra in extras:
        texts += PYPROJECT["project"]["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


GROUPS = {"bot.lock": (), "runner.lock": ("runner",), "runner-cpu.lock": ("runner",)}


@pytest.mark.parametrize(("lock", "extras"), GROUPS.items())
def test_each_lock_pins_every_dependency_of_its_group_at_a_version_pyproject_allows(
    lock: str, extras: tuple[str, ...]
) -> None:
    pinned = pins(lock)
    for requirement in wanted(*extras):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} does not pin {requirement}: run scripts/lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, which {requirement} does not allow: run scripts/lock"
        )


@pytest.mark.parametrize("lock", GROUPS)
def test_each_pin_carries_the_hashes_pip_checks_the_files_against(lock: str) -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", (LOCKS / lock).read_text())
    pinned = [entry for entry in entries if PIN.match(entry)]
    assert len(pinned) == len(pins(lock))
    unhashed = [entry.split()[0] for entry in pinned if "--hash=sha256:" not in entry]
    assert unhashed == []


def test_the_bot_lock_holds_no_torch_cuda_dvc_bentoml_or_other_ml_package() -> None:
    bot = set(pins("bot.lock"))
    assert bot & RUNNER_ONLY == set()
    assert {name for name in bot if CUDA_ONLY.match(name) or name.startswith(("dvc", "bentoml"))} == set()
    assert len(bot) < len(pins("runner.lock")) / 2, "the bot's image is a small part of a runner's"


def test_the_cpu_runner_lock_has_torchs_cpu_build_and_no_cuda_library() -> None:
    gpu, cpu = pins("runner.lock"), pins("runner-cpu.lock")
    assert cpu["torch"].local == "cpu" and gpu["torch"].local is None
    assert {name for name in cpu if CUDA_ONLY.match(name)} == set()
    dropped = set(gpu) - set(cpu)
    assert dropped and all(CUDA_ONLY.match(name) for name in dropped), dropped
    assert set(cpu) - set(gpu) == set(), "the CPU runner holds nothing the GPU runner lacks"


def test_a_package_has_the_same_version_in_every_lock() -> None:
    locks = {lock: pins(lock) for lock in GROUPS}
    for name, version in locks["runner.lock"].items():
        for lock, pinned in locks.items():
            if name in pinned:
                assert pinned[name].public == version.public, (lock, name, pinned[name], version)
    assert set(locks["bot.lock"]) <= set(locks["runner.lock"])


def test_the_locks_build_backend_is_the_one_pyproject_names() -> None:
    lines = (LOCKS / "build.in").read_text().splitlines()
    listed = [line for line in lines if line.strip() and not line.startswith("#")]
    assert listed == PYPROJECT["build-system"]["requires"]


BUILD_THE_BOT = textwrap.dedent(
    """
    import os, sys, tempfile
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    os.environ.update(
        ORBIT_GITHUB_APP_ID="4242",
        ORBIT_GITHUB_PRIVATE_KEY=key.decode(),
        ORBIT_WEBHOOK_SECRET="secret",
        ORBIT_DATABASE_URL="sqlite:///" + os.path.join(tempfile.mkdtemp(), "orbit.db"),
        ORBIT_REGISTRY="registry.example",  # every feature wired: deploys and runners too
        ORBIT_PUBLIC_DOMAIN="models.example",
        ORBIT_RUNNERS_ENABLED="true",
        KUBECONFIG=os.devnull,
    )
    import bot.app, bot.cli
    from bot.settings import load_settings

    bot.app.build_app(load_settings())
    print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
    """
)


def test_importing_the_bot_and_building_its_app_loads_nothing_of_the_runner_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BUILD_THE_BOT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert {"bot", "runner", "deploy", "fastapi", "githubkit"} <= loaded, "the app was built"
    assert loaded & {"torch", "bentoml", "dvc", "numpy", "matplotlib", "PIL"} == set()
