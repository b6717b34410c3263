"""`orbit deploy build`: the Bento, its image built without a Docker daemon, pushed, and recorded.

In one go (`build_image`, on a developer's machine): `bentoml build`, then `bentoml containerize`
with the buildah backend (CPU torch only: the served model needs no CUDA libraries), then
`buildah push` to the registry tagged with the commit, and `image.json` (repository and digest) for
the bot.

deploy.yml cuts the same work in three, one job each, so that no job that holds the registry's
credential runs anything a pull request wrote:

1. `bento` (the PR's code runs: `bentoml build` imports its service; no secret): the Bento, exported
   to one file (`export_bento`).
2. `image` (no secret either: building an image runs what the Bento says, its `RUN` lines and
   Dockerfile template included): the exported Bento imported into a store of its own,
   containerized, and saved as an OCI archive (`image_from_bento`).
3. `push` (the registry's credential, in a protected environment): the archive loaded as it is and
   pushed; the registry names it by its digest, and `image.json` records that (`push_archive`).

Registry credentials come from the environment and go to buildah on stdin, never on a command line.
`python -I -m deploy.build bento|image|push` runs each part (`-I`: nothing from the working
directory is imported).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.processes import LocalRunError, run_step, tool, tool_environment
from deploy.manifests import SERVICE
from model import MODEL_NAME

MODEL_FILE = Path("model/classifier.bentomodel")  # the trained model, as `dvc repro` exports it
BENTO_FILE = "service.bento"
ARCHIVE_FILE = "image.tar"
LOCAL_REPOSITORY = f"localhost/{SERVICE}"  # the image's name until the push job names it
COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class BuildPlan:
    """Where the image goes."""

    registry: str
    sha: str

    @property
    def repository(self) -> str:
        """Return the image repository in the registry."""
        return f"{self.registry.rstrip('/')}/{SERVICE}"

    @property
    def tag(self) -> str:
        """Return the image tagged with the commit."""
        return f"{self.repository}:{self.sha}"


def login(registry: str) -> None:
    """Log buildah in with ORBIT_REGISTRY_USER / ORBIT_REGISTRY_PASSWORD, the password on stdin."""
    user, password = os.environ.get("ORBIT_REGISTRY_USER"), os.environ.get("ORBIT_REGISTRY_PASSWORD")
    if not user or not password:
        return  # a registry that needs no login (in-cluster, or credentials from the node)
    host = registry.split("/", maxsplit=1)[0]
    result = subprocess.run(
        ["buildah", "login", "--username", user, "--password-stdin", host],
        input=password,
        text=True,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise LocalRunError(f"buildah could not log in to {host} (exit code {result.returncode})")


def _run(
    title: str, command: list[str], cwd: Path, env: dict[str, str] | None = None, *, capture: bool = False
) -> str:
    """Run one command (its output streamed, or captured and returned) and stop with its name if it fails."""
    print(f"\n==> {title}: {' '.join(command)}", flush=True)
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env or tool_environment(),
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LocalRunError(f"'{' '.join(command)}' failed with exit code {result.returncode}")
    return result.stdout or ""


def store_model(project: Path) -> None:
    """Put the trained model the project holds (pulled or trained) into the BentoML store."""
    model_file = project / MODEL_FILE
    if model_file.is_file():
        from model.classifier import import_bentomodel  # torch: only when there is a model to read

        import_bentomodel(model_file)


def build_bento(project: Path) -> str:
    """Build the project's Bento (`bentoml build` imports its service module) and return its tag."""
    store_model(project)
    run_step("bentoml build", [tool("bentoml"), "build", "--output", "tag"], project)
    return f"{MODEL_NAME}:latest"


def export_bento(project: Path, out: Path) -> Path:
    """Build the Bento and export it to one file in `out`, for a job that runs none of its code."""
    tag = build_bento(project)
    out.mkdir(parents=True, exist_ok=True)
    bento = (out / BENTO_FILE).resolve()
    bento.unlink(missing_ok=True)
    run_step("export the Bento", [tool("bentoml"), "export", tag, str(bento)], project)
    return bento


def containerize(tag: str, image: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    """Build the image of a stored Bento with buildah (no Docker daemon), named `image`."""
    command = [tool("bentoml"), "containerize", tag, "--backend", "buildah", "--image-tag", image]
    _run("containerize without a Docker daemon", command, cwd, env)


def image_from_bento(bento: Path, sha: str, out: Path) -> Path:
    """Import an exported Bento into a store of its own, build its image, save it as an OCI archive.

    Nothing here imports the Bento's code, but building its image runs what the Bento says (its
    Dockerfile template, setup script and packages): run it only where no secret is.
    """
    out.mkdir(parents=True, exist_ok=True)
    archive = (out / ARCHIVE_FILE).resolve()
    archive.unlink(missing_ok=True)
    image = f"{LOCAL_REPOSITORY}:{sha}"
    with tempfile.TemporaryDirectory(prefix="orbit-bento-store-") as home:
        env = {**tool_environment(), "BENTOML_HOME": home}
        _run("import the Bento", [tool("bentoml"), "import", str(bento.resolve())], out, env)
        listed = json.loads(
            _run("find its tag", [tool("bentoml"), "list", "-o", "json"], out, env, capture=True)
        )
        if len(listed) != 1:
            raise LocalRunError(f"the exported Bento holds {len(listed)} Bentos, not one")
        containerize(str(listed[0]["tag"]), image, out, env)
    run_step("save the image", ["buildah", "push", image, f"oci-archive:{archive}"], out)
    return archive


def push_image(image: str, plan: BuildPlan, out: Path) -> dict[str, str]:
    """Push a local image to the registry with the commit's tag and write image.json into `out`."""
    login(plan.registry)
    out.mkdir(parents=True, exist_ok=True)
    digest_file = out / "digest"
    run_step(
        "push",
        ["buildah", "push", "--digestfile", str(digest_file), image, f"docker://{plan.tag}"],
        out,
    )
    pushed = {"image": plan.repository, "digest": digest_file.read_text().strip(), "tag": plan.tag}
    (out / "image.json").write_text(json.dumps(pushed, indent=2) + "\n")
    digest_file.unlink()
    return pushed


def push_archive(archive: Path, plan: BuildPlan, out: Path) -> dict[str, str]:
    """Load an OCI archive as it is (no build, nothing of it runs), push it and write image.json."""
    source = f"oci-archive:{archive.resolve()}"
    loaded = _run("load the image", ["buildah", "pull", "--quiet", source], archive.parent, capture=True)
    lines = loaded.split()
    if not lines:
        raise LocalRunError(f"buildah loaded no image from {archive}")
    return push_image(lines[-1], plan, out)


def build_image(project: Path, plan: BuildPlan, out: Path) -> dict[str, str]:
    """Build the Bento and its image, push it, and write image.json into `out` (all in one go)."""
    tag = build_bento(project)
    containerize(tag, plan.tag, project)
    return push_image(plan.tag, plan, out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one part of the build, as deploy.yml's jobs do: `bento`, `image` or `push`."""
    parser = argparse.ArgumentParser(prog="python -I -m deploy.build", description=__doc__)
    parts = parser.add_subparsers(dest="part", required=True)
    bento = parts.add_parser("bento", help="build the Bento (runs the project's code) and export it")
    bento.add_argument("--project", default=".", help="the model project's root (default: .)")
    bento.add_argument("--out", required=True, help=f"folder for {BENTO_FILE}")
    image = parts.add_parser("image", help="build the image of an exported Bento, saved as an OCI archive")
    image.add_argument("--bento", required=True, help="the exported Bento")
    image.add_argument("--sha", required=True, help="the commit")
    image.add_argument("--out", required=True, help=f"folder for {ARCHIVE_FILE}")
    push = parts.add_parser("push", help="push an OCI archive to the registry, write image.json")
    push.add_argument("--archive", required=True, help="the image, as `image` saved it")
    push.add_argument("--registry", required=True, help="where the image goes, e.g. ghcr.io/octo-org")
    push.add_argument("--sha", required=True, help="the commit: the image's tag")
    push.add_argument("--out", required=True, help="folder for image.json")
    args = parser.parse_args(argv)
    if args.part != "bento" and not COMMIT.match(args.sha):
        parser.error(f"--sha {args.sha!r} is not a commit SHA")
    try:
        if args.part == "bento":
            print(f"exported {export_bento(Path(args.project), Path(args.out))}")
        elif args.part == "image":
            print(f"saved {image_from_bento(Path(args.bento), args.sha, Path(args.out))}")
        else:
            pushed = push_archive(Path(args.archive), BuildPlan(args.registry, args.sha), Path(args.out))
            print(f"pushed {pushed['tag']} ({pushed['digest']})")
    except (RuntimeError, ValueError) as error:
        print(f"deploy.build: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
