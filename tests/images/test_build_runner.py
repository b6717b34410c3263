"""The build runner, for real: rootless buildah as the runner user in a privileged container builds
an image, which is all the fallback full build of a Bento needs (`bentoml containerize --backend buildah`).

The CPU runner image it is built on takes ten minutes to build here, so the test builds the build
runner's Containerfile on a stand-in: the local Debian base with the runner user (uid 1001) the
runner images have.
"""

import subprocess
import uuid

import pytest

from tests.images.conftest import ROOT, podman_build

pytestmark = pytest.mark.slow
RUNNER_LIKE = """FROM {base}
RUN useradd --uid 1001 --create-home --home-dir /home/runner --shell /bin/bash runner
USER 1001
WORKDIR /home/runner
"""


@pytest.fixture(scope="module")
def build_runner(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("runner-like")
    (folder / "Containerfile").write_text(RUNNER_LIKE.format(base=base_image))
    runner_like = f"localhost/orbit-test/runner-like:{uuid.uuid4().hex[:8]}"
    subprocess.run(["podman", "build", "--quiet", "--tag", runner_like, str(folder)], check=True)
    tag = f"localhost/orbit-test/runner-build:{uuid.uuid4().hex[:8]}"
    took = podman_build("deploy/images/runner-build.Containerfile", tag, "--build-arg", f"BASE={runner_like}")
    print(f"\nthe build runner's layer built in {took:.0f} s")
    return tag


def run_as_runner(image: str, script: str, *, privileged: bool) -> subprocess.CompletedProcess[str]:
    options = ["--privileged"] if privileged else ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    return subprocess.run(
        ["podman", "run", "--rm", *options, "--user", "1001", "--entrypoint", "bash", image, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


BUILD = (
    'cd "$(mktemp -d)" && echo model > model.txt'
    " && printf 'FROM scratch\\nCOPY model.txt /model.txt\\n' > Containerfile"
    " && buildah bud --quiet --tag localhost/bento . >/dev/null && buildah images --format '{{.Name}}'"
)


def test_the_runner_user_builds_an_image_with_buildah_in_a_privileged_pod(build_runner: str) -> None:
    built = run_as_runner(build_runner, BUILD, privileged=True)
    assert built.returncode == 0, built.stderr[-2000:]
    assert built.stdout.split() == ["localhost/bento"]
    mapped = run_as_runner(build_runner, "buildah unshare cat /proc/self/uid_map", privileged=True)
    assert mapped.stdout.split() == ["0", "1001", "1", "1", "100000", "65536"], "its own user namespace"


def test_without_the_privilege_the_same_build_fails(build_runner: str) -> None:
    """Why the build class is privileged, and why the other classes can never build an image."""
    refused = run_as_runner(build_runner, BUILD, privileged=False)
    assert refused.returncode != 0


def test_the_build_runner_is_the_runner_image_plus_buildah_only() -> None:
    text = (ROOT / "deploy/images/runner-build.Containerfile").read_text()
    assert "ARG BASE=ghcr.io/orbit/runner-cpu:" in text
    assert text.rstrip().endswith("USER 1001"), "steps run as the runner user, never as root"
