"""The bot's image, built and run for real: read-only, unprivileged, and answering GitHub.

Built on the local Debian base (public registries are unreachable here), it runs with
`podman run --read-only --user 10001 --cap-drop ALL`; a signed `/help` comment gets its reply from
the GitHub double, through the SQLite inbox on the image's data volume.
"""

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.processes import free_port
from tests.fakes import SECRET, body_of, comment_payload, signed_headers
from tests.github_double import GitHubState, serve_github
from tests.images.conftest import image_bytes, podman_build, wait_until_answers

pytestmark = pytest.mark.slow
TAG = "localhost/orbit/bot:test"
# The venv's biggest parts are the Kubernetes client (about 130 MB with its bytecode) and githubkit's
# schemas (about 60 MB): about 340 MB in all. torch alone, the CPU build, takes more than 700 MB.
VENV_LIMIT_MB = 450
RUNNER_ONLY = ("torch", "dvc", "bentoml", "numpy", "matplotlib", "PIL")
PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)


@pytest.fixture(scope="module")
def bot_image(base_image: str) -> str:
    seconds = podman_build("deploy/images/bot.Containerfile", TAG, "--build-arg", f"BASE={base_image}")
    size = image_bytes(TAG) / 1e6
    base = image_bytes(base_image) / 1e6
    print(f"\nbot image built in {seconds:.0f} s: {size:.0f} MB, of which the base {base:.0f} MB")
    return TAG


def podman_run(*args: str, read_only: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in a throwaway container as the bot's user, with no capability."""
    flags = ["--read-only"] if read_only else []
    return subprocess.run(
        ["podman", "run", "--rm", *flags, "--user", "10001", "--cap-drop", "ALL", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_bot_image_holds_no_torch_dvc_or_bentoml_and_stays_small(bot_image: str) -> None:
    probe = f"import importlib.util as u; print([m for m in {RUNNER_ONLY!r} if u.find_spec(m)])"
    result = podman_run("--entrypoint", "python", bot_image, "-c", probe)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
    result = podman_run("--entrypoint", "du", bot_image, "-sm", "/opt/orbit")
    venv_mb = int(result.stdout.split()[0])
    print(f"\nthe bot's venv: {venv_mb} MB")
    assert venv_mb < VENV_LIMIT_MB


def test_the_bot_image_cannot_change_its_own_tooling(bot_image: str) -> None:
    # On a writable root filesystem, so that only ownership and modes stop the bot's user.
    writable = "find / -xdev -writable -not -path '/proc/*' -not -path '/dev/*' 2>/dev/null"
    result = podman_run("--entrypoint", "sh", bot_image, "-c", writable, read_only=False)
    assert set(result.stdout.split()) <= {"/tmp", "/var/tmp", "/var/lib/orbit", "/run/lock", "/var/lock"}, (
        result.stdout
    )
    assert "/var/lib/orbit" in result.stdout.split(), "the data folder is the bot's"
    result = podman_run("--entrypoint", "python", bot_image, "-m", "pip", "--version")
    assert result.returncode != 0, "no pip where the bot runs"


@pytest.fixture
def github() -> Iterator[tuple[GitHubState, str]]:
    state = GitHubState()
    with serve_github(state) as url:
        yield state, url


def bot_settings(api_url: str) -> list[str]:
    settings = {
        "ORBIT_GITHUB_APP_ID": "4242",
        "ORBIT_GITHUB_PRIVATE_KEY": PEM,
        "ORBIT_WEBHOOK_SECRET": SECRET.decode(),
        "ORBIT_GITHUB_API_URL": api_url,
        "ORBIT_RUNNERS_ENABLED": "false",  # no cluster here
    }
    return [option for name, value in settings.items() for option in ("--env", f"{name}={value}")]


def test_the_bot_image_runs_read_only_unprivileged_and_answers_a_signed_delivery(
    bot_image: str, github: tuple[GitHubState, str], container_names: list[str]
) -> None:
    state, api_url = github
    port, name = free_port(), f"orbit-bot-test-{free_port()}"
    container_names.append(name)
    started = subprocess.run(
        [
            "podman",
            "run",
            "--detach",
            "--name",
            name,
            "--read-only",
            "--user",
            "10001",
            "--cap-drop",
            "ALL",
            "--network",
            "host",
            *bot_settings(api_url),
            bot_image,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/healthz", name, 60)
    assert httpx.get(f"{url}/readyz").status_code == 200

    body = body_of(comment_payload("/help", number=7))
    unsigned = httpx.post(f"{url}/webhook", content=body, headers={"x-github-event": "issue_comment"})
    assert unsigned.status_code == 401
    assert (
        httpx.post(f"{url}/webhook", content=body, headers=signed_headers("issue_comment", body)).status_code
        == 202
    )
    deadline = time.monotonic() + 30
    while not state.comments and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [comment["number"] for comment in state.comments] == [7], (
        "the delivery was stored in the inbox on the data volume, then answered"
    )
