"""`orbit deploy build` up to the image build: a real `bentoml build` and `bentoml containerize`, with a
recording `buildah` on PATH, since images cannot be pulled here (no base image for a real build)."""

import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import run

pytestmark = pytest.mark.slow

FAKE_BUILDAH = """#!/usr/bin/env bash
# Records each call; `build` keeps the Dockerfile it was given; `push` writes a digest; `login` reads stdin.
echo "$*" >> "$BUILDAH_LOG"
case "$1" in
  build) cp "$(pwd)/env/docker/Dockerfile" "$BUILDAH_DIR/Dockerfile"
         cp -r "$(pwd)/env/python" "$BUILDAH_DIR/python" ;;
  push) shift; while [ "$1" != "--digestfile" ]; do shift; done; printf 'sha256:%064d' 7 > "$2" ;;
  login) cat > "$BUILDAH_DIR/stdin" ;;
esac
"""


def test_the_image_is_built_by_buildah_pushed_by_digest_and_recorded(
    trained_project: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "buildah"
    fake.write_text(FAKE_BUILDAH)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "BUILDAH_LOG": str(tmp_path / "calls"),
        "BUILDAH_DIR": str(tmp_path),
        "ORBIT_REGISTRY_USER": "robot",
        "ORBIT_REGISTRY_PASSWORD": "s3cret-registry-password",
    }
    sha = "a" * 40
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = run(
            [
                "orbit",
                "deploy",
                "build",
                "--registry",
                "registry.example.com:5000/octo",
                "--sha",
                sha,
                "--out",
                str(tmp_path / "image"),
                "--project",
                str(trained_project),
            ],
            trained_project,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    tag = f"registry.example.com:5000/octo/celestial-bodies-classifier:{sha}"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith(f"build --tag {tag} --file "), calls[0]
    assert calls[1] == "login --username robot --password-stdin registry.example.com:5000"
    assert calls[2].startswith("push --digestfile ") and calls[2].endswith(f"{tag} docker://{tag}")
    assert (tmp_path / "stdin").read_text() == "s3cret-registry-password", "the password goes on stdin"
    assert "s3cret-registry-password" not in result.stdout + result.stderr + "\n".join(calls)
    image = json.loads((tmp_path / "image" / "image.json").read_text())
    assert image == {
        "image": "registry.example.com:5000/octo/celestial-bodies-classifier",
        "digest": "sha256:" + "0" * 63 + "7",
        "tag": tag,
    }
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "nvidia" not in dockerfile.lower()
    requirements = (tmp_path / "python" / "requirements.txt").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in requirements, (
        "torch from the CPU wheel index"
    )
    assert "torch==2.13.0" in requirements
