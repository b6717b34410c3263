"""`orbit deploy build` and its parts. The usual path: a real `bentoml build` and `export`, the Bento's
requirements checked against the serving base's lock, and its layer appended to a base in Debian's
real `docker-registry`. The full-build fallback: `import` and `containerize`, with a recording `buildah`
on PATH (tests/images/test_serving_image.py runs the served image), and the push of its OCI archive
with the registry's HTTP API, no buildah (tests/deploy/test_archive.py checks what an archive holds)."""

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from deploy.build import DEPENDENCIES_DIFFER, main
from deploy.layer import read_member
from deploy.registry import Reference, Registry
from deploy.serving_base import CONTAINERFILE, LOCK, base_image
from tests.conftest import REPO, TINY_PARAMS, run
from tests.deploy.registries import local_registry, oci_archive, push_tiny_base

pytestmark = pytest.mark.slow

FAKE_BUILDAH = """#!/usr/bin/env bash
# Records each call; `build` keeps the Dockerfile it was given; `push` writes a digest (to a registry)
# or an archive (oci-archive:); `pull` answers an image id; `login` reads stdin.
echo "$*" >> "$BUILDAH_LOG"
case "$1" in
  build) cp "$(pwd)/env/docker/Dockerfile" "$BUILDAH_DIR/Dockerfile"
         rm -rf "$BUILDAH_DIR/python"; cp -r "$(pwd)/env/python" "$BUILDAH_DIR/python" ;;
  push) if [ "$2" = "--digestfile" ]; then printf 'sha256:%064d' 7 > "$3"
        else printf 'an OCI archive of %s' "$2" > "${3#oci-archive:}"; fi ;;
  pull) echo "Getting image source signatures" >&2; printf '%064d\\n' 42 ;;
  login) cat > "$BUILDAH_DIR/stdin" ;;
esac
"""
PASSWORD = "s3cret-registry-password"
SHA = "a" * 40
REGISTRY = "registry.example.com:5000/octo"
TAG = f"{REGISTRY}/celestial-bodies-classifier:{SHA}"
IMAGE_JSON = {
    "image": f"{REGISTRY}/celestial-bodies-classifier",
    "digest": "sha256:" + "0" * 63 + "7",
    "tag": TAG,
}


@pytest.fixture
def buildah(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the recording buildah first on PATH; return the file of its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "buildah"
    fake.write_text(FAKE_BUILDAH)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("BUILDAH_LOG", str(tmp_path / "calls"))
    monkeypatch.setenv("BUILDAH_DIR", str(tmp_path))
    monkeypatch.delenv("ORBIT_REGISTRY_USER", raising=False)
    monkeypatch.delenv("ORBIT_REGISTRY_PASSWORD", raising=False)
    return tmp_path / "calls"


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def assert_a_cpu_image(tmp_path: Path) -> None:
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "nvidia" not in dockerfile.lower()
    requirements = (tmp_path / "python" / "requirements.txt").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in requirements, (
        "torch from the CPU wheel index"
    )
    assert "torch==2.13.0" in requirements


def with_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORBIT_REGISTRY_USER", "robot")
    monkeypatch.setenv("ORBIT_REGISTRY_PASSWORD", PASSWORD)


def test_the_image_is_built_by_buildah_pushed_by_digest_and_recorded(
    trained_project: Path, tmp_path: Path, buildah: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_credentials(monkeypatch)
    result = run(
        [
            "orbit",
            "deploy",
            "build",
            "--registry",
            REGISTRY,
            "--sha",
            SHA,
            "--out",
            str(tmp_path / "image"),
            "--project",
            str(trained_project),
        ],
        trained_project,
    )
    recorded = calls(buildah)
    assert recorded[0].startswith(f"build --tag {TAG} --file "), recorded[0]
    assert recorded[1] == "login --username robot --password-stdin registry.example.com:5000"
    assert recorded[2].startswith("push --digestfile ") and recorded[2].endswith(f"{TAG} docker://{TAG}")
    assert (tmp_path / "stdin").read_text() == PASSWORD, "the password goes on stdin"
    assert PASSWORD not in result.stdout + result.stderr + "\n".join(recorded)
    assert json.loads((tmp_path / "image" / "image.json").read_text()) == IMAGE_JSON
    assert_a_cpu_image(tmp_path)


def test_the_three_parts_hand_on_a_bento_then_an_archive_and_only_the_last_holds_the_password(
    trained_project: Path, tmp_path: Path, buildah: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bento (the project's code, no secret) → image (no secret) → push (the password): deploy.yml's jobs."""
    bento_out, archive_out, image_out = tmp_path / "bento", tmp_path / "archive", tmp_path / "image"
    bento = run(
        ["python", "-I", "-m", "deploy.build", "bento", "--project", ".", "--out", str(bento_out)],
        trained_project,
    )
    assert calls(buildah) == [], "building the Bento builds no image and pushes nothing"
    exported = bento_out / "service.bento"
    assert exported.is_file() and f"exported {exported}" in bento.stdout

    elsewhere = tmp_path / "elsewhere"  # the image job: no checkout, a store of its own
    elsewhere.mkdir()
    image = run(
        [
            "python",
            "-I",
            "-m",
            "deploy.build",
            "image",
            "--bento",
            str(exported),
            "--sha",
            SHA,
            "--out",
            str(archive_out),
        ],
        elsewhere,
    )
    local = f"localhost/celestial-bodies-classifier:{SHA}"
    archive = archive_out / "image.tar"
    built = calls(buildah)
    assert built[0].startswith(f"build --tag {local} --file "), built[0]
    assert built[1:] == [f"push {local} oci-archive:{archive}"], "saved as an archive, never to a registry"
    assert archive.read_text() == f"an OCI archive of {local}"
    assert f"saved {archive}" in image.stdout
    assert_a_cpu_image(tmp_path)

    # the push job: the archive is data, pushed with the registry's HTTP API (no buildah there); the
    # recording buildah's "archive" is text, so a real one (made by the test) stands in for it
    digest, _ = oci_archive(archive, {"home/bentoml/bento/bento.yaml": b"service: x\n"})
    with_credentials(monkeypatch)
    (tmp_path / "registry").mkdir()
    with local_registry(tmp_path / "registry") as host:
        registry = f"{host}/octo"
        pushed = run(
            [
                *("python", "-I", "-m", "deploy.build", "push", "--archive", str(archive)),
                *("--registry", registry, "--sha", SHA, "--out", str(image_out)),
            ],
            elsewhere,
        )
        tag = f"{registry}/celestial-bodies-classifier:{SHA}"
        with Registry(registry) as client:
            assert client.manifest(Reference.parse(tag)).digest == digest
    assert calls(buildah) == built, "the push loads nothing into a container engine and runs no buildah"
    assert PASSWORD not in pushed.stdout + pushed.stderr
    recorded = json.loads((image_out / "image.json").read_text())
    assert recorded == {"image": f"{registry}/celestial-bodies-classifier", "digest": digest, "tag": tag}
    assert f"pushed {tag}" in pushed.stdout


@pytest.mark.parametrize("part", ["image", "push", "append"])
def test_a_part_that_names_an_image_takes_only_a_commit_sha(part: str, tmp_path: Path) -> None:
    given = {
        "image": ["--bento", "b"],
        "push": ["--archive", "a", "--registry", REGISTRY],
        "append": ["--bento", "b", "--base", "b", "--lock", "l", "--registry", REGISTRY],
    }[part]
    with pytest.raises(SystemExit) as stopped:
        main([part, *given, "--sha", "main;rm -rf /", "--out", str(tmp_path)])
    assert stopped.value.code == 2


def deploy_build(part: str, *args: str, cwd: Path, check: bool = True) -> "subprocess.CompletedProcess[str]":
    return run(["python", "-I", "-m", "deploy.build", part, *args], cwd, check=check)


def test_the_bento_checked_against_the_lock_is_appended_to_the_base_and_recorded(
    trained_project: Path, tmp_path: Path, buildah: Path
) -> None:
    """bento (the project's code) → check (data) → base + append (the registry): no image build at all."""
    deploy_build("bento", "--project", ".", "--out", str(tmp_path), cwd=trained_project)
    bento, lock = str(tmp_path / "service.bento"), str(REPO / LOCK)
    elsewhere = tmp_path / "elsewhere"  # the check and push jobs: no checkout of the PR
    elsewhere.mkdir()
    checked = deploy_build("check", "--bento", bento, "--lock", lock, cwd=elsewhere)
    assert "satisfies the Bento's requirements" in checked.stdout
    with local_registry(tmp_path) as host:
        registry = f"{host}/octo"
        named = deploy_build(
            "base",
            "--registry",
            registry,
            "--lock",
            lock,
            "--containerfile",
            str(REPO / CONTAINERFILE),
            cwd=elsewhere,
        )
        base = named.stdout.strip()
        assert base == base_image(registry, "celestial-bodies-classifier", REPO / LOCK, REPO / CONTAINERFILE)
        with Registry(registry) as client:
            push_tiny_base(client, Reference.parse(base), {"usr/bin/python3": b"#!"})
        out = tmp_path / "image"
        pushed = deploy_build(
            "append",
            *("--bento", bento, "--base", base, "--lock", lock, "--registry", registry),
            *("--sha", SHA, "--out", str(out)),
            cwd=elsewhere,
        )
        recorded = json.loads((out / "image.json").read_text())
        tag = f"{registry}/celestial-bodies-classifier:{SHA}"
        assert recorded == {
            "image": f"{registry}/celestial-bodies-classifier",
            "digest": recorded["digest"],
            "tag": tag,
        }
        with Registry(registry) as client:
            manifest = client.manifest(Reference.parse(tag))
        assert manifest.digest == recorded["digest"] and f"pushed {tag}" in pushed.stdout
        assert len(manifest.parsed()["layers"]) == 2, "the base's layer and the Bento's"
    assert calls(buildah) == [], "no image build, no container engine"


def test_a_bento_the_base_cannot_take_is_refused_with_the_packages_named(
    trained_project: Path, tmp_path: Path
) -> None:
    deploy_build("bento", "--project", ".", "--out", str(tmp_path), cwd=trained_project)
    lock = tmp_path / "old.lock"
    lock.write_text(
        "".join(
            line + "\n" for line in (REPO / LOCK).read_text().splitlines() if not line.startswith("torch==")
        )
    )
    bento = str(tmp_path / "service.bento")
    checked = deploy_build("check", "--bento", bento, "--lock", str(lock), cwd=tmp_path, check=False)
    assert checked.returncode == DEPENDENCIES_DIFFER
    assert "torch==2.13.0: not in the base lock" in checked.stderr
    appended = deploy_build(
        "append",
        *("--bento", bento, "--base", "127.0.0.1:1/octo/x-base:1", "--lock", str(lock)),
        *("--registry", "127.0.0.1:1/octo", "--sha", SHA, "--out", str(tmp_path / "o")),
        cwd=tmp_path,
        check=False,
    )
    assert appended.returncode == DEPENDENCIES_DIFFER, "refused before any registry is reached"
    assert not (tmp_path / "o" / "image.json").exists()


REPORT = "https://github.com/octo/model/pull/7#issuecomment-42"


def test_the_bento_holds_the_provenance_of_its_checkout_and_the_checkout_is_left_without_it(
    trained_project: Path, tmp_path: Path
) -> None:
    """The `bento` part at the commit it was asked for: the exported Bento's model/metadata.json (what
    /metadata answers) holds that commit, the md5 of the very model file, the params, the metrics and
    the report's link; the file is gone from the checkout after."""
    head = run(["git", "rev-parse", "HEAD"], trained_project).stdout.strip()
    deploy_build(
        *("bento", "--project", ".", "--out", str(tmp_path), "--sha", head),
        f"--report-url={REPORT}",
        cwd=trained_project,
    )
    recorded = json.loads(read_member(tmp_path / "service.bento", "src/model/metadata.json"))
    model = (trained_project / "model/classifier.bentomodel").read_bytes()
    assert recorded["sha"] == head
    assert recorded["clean"] is False, "dvc repro wrote dvc.lock and evaluation/ after the commit"
    assert set(recorded["dvc_lock"]) == {"generate", "prepare", "train", "evaluate"}
    assert recorded["dvc_lock"]["train"]["model/classifier.bentomodel"] == hashlib.md5(model).hexdigest()
    assert recorded["dvc_lock"]["prepare"]["data/prepared"].endswith(".dir"), "the data, a folder"
    assert recorded["params"] == TINY_PARAMS
    assert recorded["metrics"] == json.loads((trained_project / "evaluation/metrics.json").read_text())
    assert recorded["report_url"] == REPORT
    assert not (trained_project / "model/metadata.json").exists()

    elsewhere = deploy_build(
        *("bento", "--project", ".", "--out", str(tmp_path / "no"), "--sha", "f" * 40),
        cwd=trained_project,
        check=False,
    )
    assert elsewhere.returncode == 1 and f"the checkout is at {head}" in elsewhere.stderr
    assert not (tmp_path / "no").exists(), "refused before anything is built"
