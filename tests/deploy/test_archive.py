"""A full build's OCI archive pushed as data with the registry's HTTP API (no buildah, no container
engine in the job holding the credential): to Debian's real `docker-registry`, by tag, recorded in
image.json; an archive whose blob does not match its digest, whose manifest names a blob it lacks, or
whose image is over the cap, is refused before anything is sent."""

import json
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.append import ArchiveError, push_archive
from deploy.build import main
from deploy.registry import Reference, Registry
from tests.deploy.registries import RegistryDouble, local_registry, oci_archive

SHA = "c" * 40
FILES = {"home/bentoml/bento/bento.yaml": b"service: x\n", "usr/bin/python3": b"#!" * 100}


@pytest.fixture(scope="module")
def registry_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


def test_the_push_part_pushes_the_archive_with_the_http_api_and_records_it(
    registry_host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"  # a buildah that fails: the push job has none, and needs none
    bin_dir.mkdir()
    (bin_dir / "buildah").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "calls"}\nexit 1\n')
    (bin_dir / "buildah").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    archive = tmp_path / "image.tar"
    digest, blobs = oci_archive(archive, FILES)
    registry, out = f"{registry_host}/octo", tmp_path / "out"
    code = main(["push", "--archive", str(archive), "--registry", registry, "--sha", SHA, "--out", str(out)])
    assert code == 0 and not (tmp_path / "calls").exists(), "no buildah"
    tag = f"{registry}/celestial-bodies-classifier:{SHA}"
    recorded = json.loads((out / "image.json").read_text())
    assert recorded == {"image": f"{registry}/celestial-bodies-classifier", "digest": digest, "tag": tag}
    pulled = httpx.get(
        f"http://{registry_host}/v2/octo/celestial-bodies-classifier/manifests/{SHA}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert pulled.headers["Docker-Content-Digest"] == digest and pulled.content == blobs[digest]
    for blob, data in blobs.items() - {(digest, blobs[digest])}:  # the config and the layer
        got = httpx.get(f"http://{registry_host}/v2/octo/celestial-bodies-classifier/blobs/{blob}")
        assert got.status_code == 200 and got.content == data
    with Registry(registry) as again:  # a second push finds everything there
        push_archive(again, archive, Reference.parse(tag))
        assert again.uploaded == []


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"corrupt": "layer"}, "does not match its digest"),
        ({"corrupt": "config"}, "does not match its digest"),
        ({"omit": "layer"}, "lacks the blob"),
        ({"omit": "config"}, "lacks the blob"),
    ],
)
def test_a_blob_that_does_not_match_or_is_missing_is_refused_and_nothing_is_sent(
    tmp_path: Path, change: dict[str, str], says: str
) -> None:
    archive = tmp_path / "image.tar"
    oci_archive(archive, FILES, **change)
    double = RegistryDouble()
    with (
        Registry("registry.example.com/octo", transport=double.transport()) as registry,
        pytest.raises(ArchiveError, match=says),
    ):
        push_archive(registry, archive, Reference.parse(f"registry.example.com/octo/model:{SHA}"))
    assert double.sent("POST") == double.sent("PUT") == [] and double.blobs == {}


def test_the_push_part_exits_1_on_a_bad_archive_and_records_nothing(
    registry_host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "image.tar"
    oci_archive(archive, FILES, corrupt="layer")
    out = tmp_path / "out"
    registry = f"{registry_host}/octo"
    code = main(["push", "--archive", str(archive), "--registry", registry, "--sha", SHA, "--out", str(out)])
    assert code == 1 and "does not match its digest" in capsys.readouterr().err
    assert not (out / "image.json").exists()
    tags = httpx.get(f"http://{registry_host}/v2/octo/celestial-bodies-classifier/manifests/{SHA}")
    assert tags.status_code == 404


def test_an_image_over_the_cap_is_refused_before_anything_is_read_or_sent(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    oci_archive(archive, FILES)
    double = RegistryDouble()
    with (
        Registry("registry.example.com/octo", transport=double.transport()) as registry,
        pytest.raises(ArchiveError, match="over 100 bytes"),
    ):
        push_archive(registry, archive, Reference.parse(f"registry.example.com/octo/model:{SHA}"), 100)
    assert double.requests == []


def test_an_archive_with_a_link_or_a_sparse_blob_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    oci_archive(archive, FILES)
    with tarfile.open(archive, "a") as tar:
        link = tarfile.TarInfo("blobs/sha256/" + "0" * 64)
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    with (
        Registry("registry.example.com/octo", transport=RegistryDouble().transport()) as registry,
        pytest.raises(ArchiveError, match="not a plain file"),
    ):
        push_archive(registry, archive, Reference.parse(f"registry.example.com/octo/model:{SHA}"))
