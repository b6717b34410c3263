"""The model's image without privileges, for real: the serving base built with podman on the local
bookworm base, pushed to Debian's `docker-registry`; the Bento of a trained project appended as one
layer by `deploy.build append` over HTTP; the result pulled and run by podman read-only, as BentoML's
user, with no capability, answering `/readyz`, `/predict` and `/metadata`. It prints the base's build time and
size, the append+push time and the layer's size."""

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.processes import free_port
from deploy.manifests import SERVICE
from deploy.registry import Reference
from deploy.serving_base import CONTAINERFILE, LOCK
from deploy.serving_base import base_image as serving_base
from model import CLASSES
from tests.conftest import run
from tests.deploy.registries import local_registry
from tests.images.conftest import ROOT, image_bytes, podman_build, wait_until_answers

pytestmark = pytest.mark.slow

SHA = "e" * 40
WHEELS = "/opt/wheels"  # the CPU torch wheel: no PyPI download of the CUDA build here
SMOKE = ROOT / "deploy/smoke.png"


@pytest.fixture(scope="module")
def registry_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


@pytest.fixture(scope="module")
def pushed_base(base_image: str, registry_host: str) -> str:
    """Build the serving base on the local bookworm base and push it, named as deploys name it."""
    local = "localhost/orbit-serving-base:test"
    seconds = podman_build(
        str(CONTAINERFILE),
        local,
        "--build-arg",
        f"BASE={base_image}",
        "--build-arg",
        "PIP_EXTRA_INDEX_URL=",
        "--build-arg",
        "PIP_FIND_LINKS=/wheels",
        "--volume",
        f"{WHEELS}:/wheels:ro",
    )
    print(f"\nserving base: built in {seconds:.0f} s, {image_bytes(local) / 1e6:.0f} MB")
    remote = base_image_name(registry_host)
    subprocess.run(["podman", "push", "--quiet", "--tls-verify=false", local, remote], check=True)
    return remote


def append_command(bento: Path, base: str, registry_host: str, out: Path) -> list[str]:
    """Return the deploy's `append` part, as deploy.yml's push job runs it."""
    part = ["python", "-I", "-m", "deploy.build", "append", "--bento", str(bento), "--base", base]
    return [
        *part,
        "--lock",
        str(ROOT / LOCK),
        "--registry",
        f"{registry_host}/orbit",
        "--sha",
        SHA,
        "--out",
        str(out),
    ]


def base_image_name(registry_host: str) -> str:
    return serving_base(f"{registry_host}/orbit", SERVICE, ROOT / LOCK, ROOT / CONTAINERFILE)


def test_the_bento_appended_to_the_serving_base_runs_read_only_and_unprivileged_and_predicts(
    pushed_base: str,
    registry_host: str,
    trained_project: Path,
    tmp_path: Path,
    container_names: list[str],
) -> None:
    run(
        ["python", "-I", "-m", "deploy.build", "bento", "--project", ".", "--out", str(tmp_path)],
        trained_project,
    )
    bento = tmp_path / "service.bento"
    started = time.monotonic()
    appended = run(
        append_command(bento, pushed_base, registry_host, tmp_path / "image"),
        trained_project,
    )
    seconds = time.monotonic() - started
    layer_line = next(line for line in appended.stdout.splitlines() if line.startswith("layer "))
    print(f"append+push: {seconds:.1f} s; {layer_line}")
    recorded = json.loads((tmp_path / "image" / "image.json").read_text())
    assert recorded["image"] == f"{registry_host}/orbit/{SERVICE}"
    image = f"{recorded['image']}@{recorded['digest']}"
    Reference.parse(image)

    subprocess.run(["podman", "pull", "--quiet", "--tls-verify=false", image], check=True)
    name = f"orbit-serving-test-{free_port()}"
    port = free_port()
    container_names.append(name)
    subprocess.run(
        [
            "podman",
            "run",
            "--detach",
            "--name",
            name,
            "--read-only",
            "--tmpfs",
            "/tmp",  # the pod's emptyDir
            "--user",
            "1034",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--publish",
            f"127.0.0.1:{port}:3000",
            image,
        ],
        check=True,
        capture_output=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/readyz", name, 120)
    answer = httpx.post(
        f"{url}/predict", files={"image": ("smoke.png", SMOKE.read_bytes(), "image/png")}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["prediction"] in CLASSES
    provenance = httpx.get(f"{url}/metadata", timeout=30)
    assert provenance.status_code == 200, provenance.text
    head = run(["git", "rev-parse", "HEAD"], trained_project).stdout.strip()
    assert (provenance.json()["provenance"], provenance.json()["sha"]) == ("recorded", head), (
        "the appended layer holds the provenance the bento part wrote"
    )

    again = run(
        append_command(bento, pushed_base, registry_host, tmp_path / "again"),
        trained_project,
    )
    assert json.loads((tmp_path / "again" / "image.json").read_text()) == recorded, (
        "the same Bento, the same image"
    )
    assert "pushed" in again.stdout
