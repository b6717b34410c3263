"""`dvc push` and `dvc pull` against the embedded local remote and an S3 double (moto)."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from bot.processes import free_port
from tests.conftest import REPO, run

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="models")
    yield endpoint
    server.stop()


def tracked_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    run(["git", "init", "-q"], project)
    shutil.copytree(
        REPO / ".dvc", project / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local")
    )
    (project / "data/raw.bin").write_bytes(bytes(range(256)) * 1000)
    run(["dvc", "add", "data/raw.bin"], project)
    return project


def forget_local_copies(project: Path) -> None:
    shutil.rmtree(project / ".dvc/cache")
    (project / "data/raw.bin").unlink()


def test_push_and_pull_through_s3(tmp_path: Path, s3_endpoint: str) -> None:
    project = tracked_project(tmp_path)
    run(["dvc", "remote", "add", "s3", "s3://models/orbit"], project)
    run(["dvc", "remote", "modify", "s3", "endpointurl", s3_endpoint], project)
    run(["dvc", "push", "-r", "s3"], project)
    stored = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="models", Prefix="orbit/")
    assert stored["KeyCount"] == 1

    forget_local_copies(project)
    run(["dvc", "pull", "-r", "s3"], project)
    assert (project / "data/raw.bin").read_bytes() == bytes(range(256)) * 1000


def test_default_remote_is_a_local_directory(tmp_path: Path) -> None:
    project = tracked_project(tmp_path)
    run(["dvc", "push"], project)
    assert any((project / ".dvc-storage").rglob("*"))
    forget_local_copies(project)
    run(["dvc", "pull"], project)
    assert (project / "data/raw.bin").stat().st_size == 256_000
