"""What the image tests share: the container tools, the local base image, and building with podman.

Public registries cannot be reached where these tests run, so `scripts/base-image` makes a Debian
bookworm base (debootstrap, `podman import`) that stands in for the Containerfiles' public defaults.
"""

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/orbit-base:bookworm"
# A build step that reaches PyPI trusts the machine's certificate authorities.
CERTIFICATES = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="session")
def base_image() -> str:
    """Return the tag of the local base image, after installing the tools and making it if need be."""
    subprocess.run([ROOT / "scripts/container-tools"], check=True)
    subprocess.run(
        [ROOT / "scripts/base-image"], check=True, env={**os.environ, "ORBIT_BASE_IMAGE": BASE_IMAGE}
    )
    return BASE_IMAGE


def podman_build(containerfile: str, tag: str, *options: str) -> float:
    """Build `containerfile` from the repository root as `tag`; return the seconds it took."""
    started = time.monotonic()
    subprocess.run(
        [
            "podman",
            "build",
            "--quiet",
            "--format",
            "docker",  # keeps SHELL (pipefail), which the OCI format drops
            "--file",
            containerfile,
            "--tag",
            tag,
            "--volume",
            f"{CERTIFICATES}:{CERTIFICATES}:ro",
            *options,
            ".",
        ],
        cwd=ROOT,
        check=True,
    )
    return time.monotonic() - started


def image_bytes(tag: str) -> int:
    """Return the size of an image, all its layers together."""
    output = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(output.stdout)


def wait_until_answers(url: str, container: str, seconds: float) -> None:
    """Wait until `url` answers 200; past `seconds`, fail with the container's logs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    logs = subprocess.run(["podman", "logs", container], capture_output=True, text=True, check=False)
    raise AssertionError(f"{container} never answered {url} with 200:\n{logs.stdout}{logs.stderr}")


@pytest.fixture
def container_names() -> Iterator[list[str]]:
    """Collect the names of the containers a test starts; remove them when it ends."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["podman", "rm", "--force", "--time", "5", name], capture_output=True, check=False)
