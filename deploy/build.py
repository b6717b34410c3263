"""`orbit deploy build`: the Bento, its image, pushed, and recorded.

The usual way, with no image build at all (`append_bento`): the serving base image (the model's
dependencies, built from `requirements/serving.lock` by serving-base.yml, tagged with the lock's hash)
gets one more layer holding the exported Bento, and the result is pushed with the registry's HTTP API
(deploy/append.py): no `RUN`, no container engine, no privileges. `image.json` (repository and digest)
records it for the bot.

Only a Bento whose requirements the base's lock does not satisfy needs a full build
(`check_bento` says which packages differ): `bentoml containerize` with the buildah backend (CPU torch
only), which needs a privileged build runner (the `orbit-build` class), saved as an OCI archive.
`build_image` builds and pushes with buildah in one go on a developer's machine.

deploy.yml cuts the work in parts, one job each, so that no job that holds the registry's credential
runs anything a pull request wrote:

1. `bento` (the PR's code runs: `bentoml build` imports its service; no secret): the Bento, exported
   to one file (`export_bento`), with the provenance its `GET /metadata` answers (deploy/provenance.py:
   the commit, dvc.lock's hashes, params, metrics, the report's link) written into it.
2. `check` (no secret, nothing of the Bento runs: its requirements are read as data): whether the
   base's lock satisfies them; exit code 3 when it does not.
3. `append` (the registry's credential, in a protected environment): the exported Bento's files
   packed as a layer (a tar of data: nothing extracted, nothing run) and appended to the base
   (`append_bento`), then image.json.
   Or, when `check` said 3, the fallback: `image` (no secret: building an image runs what the Bento
   says, its `RUN` lines and Dockerfile template included) saves an OCI archive
   (`image_from_bento`), and `push` (the credential) pushes it as it is (`push_oci_archive`): read as
   data with the registry's HTTP API like `append` (each blob checked against its digest and size,
   and capped), with no buildah and no container engine in the job that holds the credential.

Registry credentials come from the environment (ORBIT_REGISTRY_USER / ORBIT_REGISTRY_PASSWORD),
never from a command line. `python -I -m deploy.build bento|check|base|append|image|push` runs each
part (`-I`: nothing from the working directory is imported).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.processes import LocalRunError, run_step, tool, tool_environment
from deploy.append import append, push_archive
from deploy.layer import REQUIREMENTS, build_layer, read_member
from deploy.manifests import SERVICE
from deploy.provenance import ProvenanceError, provenance, written_for_build
from deploy.registry import Reference, Registry
from deploy.serving_base import base_image, differences, locked_versions
from model import MODEL_NAME

MODEL_FILE = Path("model/classifier.bentomodel")  # the trained model, as `dvc repro` exports it
BENTO_FILE = "service.bento"
ARCHIVE_FILE = "image.tar"
LOCAL_REPOSITORY = f"localhost/{SERVICE}"  # the image's name until the push job names it
COMMIT = re.compile(r"^[0-9a-f]{40}$")
DEPENDENCIES_DIFFER = 3  # `check`'s and `append`'s exit code: the Bento needs a full build


class DependenciesDiffer(ValueError):
    """The Bento's requirements are not what the base's lock holds: it needs a full build."""


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


def build_bento(project: Path, sha: str | None = None, report_url: str = "") -> str:
    """Build the project's Bento (`bentoml build` imports its service module) and return its tag.

    Its provenance is read from the checkout first (at `sha`, when given) and written into it.
    """
    document = provenance(project, sha, report_url)
    store_model(project)
    with written_for_build(project, document):
        run_step("bentoml build", [tool("bentoml"), "build", "--output", "tag"], project)
    return f"{MODEL_NAME}:latest"


def export_bento(project: Path, out: Path, sha: str | None = None, report_url: str = "") -> Path:
    """Build the Bento and export it to one file in `out`, for a job that runs none of its code."""
    tag = build_bento(project, sha, report_url)
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
    digest_file.unlink()
    return record(pushed, out)


def push_oci_archive(archive: Path, plan: BuildPlan, out: Path) -> dict[str, str]:
    """Push an OCI archive as data with the registry's HTTP API (no buildah), and write image.json."""
    target = Reference.parse(plan.tag)
    with Registry(plan.registry, credentials()) as registry:
        pushed = push_archive(registry, archive, target)
    return record({"image": plan.repository, "digest": pushed.digest, "tag": plan.tag}, out)


def credentials() -> tuple[str, str] | None:
    """Return ORBIT_REGISTRY_USER and ORBIT_REGISTRY_PASSWORD, or None when the registry needs none."""
    user, password = os.environ.get("ORBIT_REGISTRY_USER"), os.environ.get("ORBIT_REGISTRY_PASSWORD")
    return (user, password) if user and password else None


def check_bento(bento: Path, lock: Path) -> None:
    """Raise DependenciesDiffer, naming each package, unless the base's lock satisfies the Bento."""
    differ = differences(read_member(bento, REQUIREMENTS), locked_versions(lock.read_text()))
    if differ:
        listed = "".join(f"\n  {line}" for line in differ)
        raise DependenciesDiffer(
            f"the Bento's requirements differ from the serving base's lock {lock}:{listed}\n"
            "it needs a full image build (deploy.yml's fallback on the orbit-build runners)"
        )


def append_bento(bento: Path, base: str, lock: Path, plan: BuildPlan, out: Path) -> dict[str, str]:
    """Append the Bento as one layer to the base, push it with the commit's tag, write image.json."""
    check_bento(bento, lock)
    target = Reference.parse(plan.tag)
    with tempfile.TemporaryDirectory(prefix="orbit-layer-") as scratch:
        layer = build_layer(bento, Path(scratch))
        print(f"layer {layer.digest} ({layer.size} bytes) on {base}", flush=True)
        with Registry(plan.registry, credentials()) as registry:
            appended = append(registry, Reference.parse(base), target, layer, plan.sha)
    return record({"image": plan.repository, "digest": appended.digest, "tag": plan.tag}, out)


def record(pushed: dict[str, str], out: Path) -> dict[str, str]:
    """Write image.json, what the bot reads of the run, into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "image.json").write_text(json.dumps(pushed, indent=2) + "\n")
    return pushed


def build_image(project: Path, plan: BuildPlan, out: Path) -> dict[str, str]:
    """Build the Bento and its image, push it, and write image.json into `out` (all in one go)."""
    tag = build_bento(project)
    containerize(tag, plan.tag, project)
    return push_image(plan.tag, plan, out)


def parser() -> argparse.ArgumentParser:
    """Return the command line of the parts deploy.yml's jobs run."""
    parser = argparse.ArgumentParser(prog="python -I -m deploy.build", description=__doc__)
    parts = parser.add_subparsers(dest="part", required=True)
    bento = parts.add_parser("bento", help="build the Bento (runs the project's code) and export it")
    bento.add_argument("--project", default=".", help="the model project's root (default: .)")
    bento.add_argument("--out", required=True, help=f"folder for {BENTO_FILE}")
    bento.add_argument("--sha", help="the commit the checkout must be at (recorded: git's HEAD)")
    bento.add_argument(
        "--report-url", default="", help="the training report's https:// link, for /metadata (optional)"
    )
    check = parts.add_parser(
        "check", help=f"exit {DEPENDENCIES_DIFFER} if the base's lock lacks the Bento's needs"
    )
    check.add_argument("--bento", required=True, help="the exported Bento")
    check.add_argument("--lock", required=True, help="the serving base's lock")
    base = parts.add_parser("base", help="print the serving base image of a lock and Containerfile")
    base.add_argument("--registry", required=True, help="where the base is, e.g. ghcr.io/octo-org")
    base.add_argument("--lock", required=True, help="the serving base's lock")
    base.add_argument("--containerfile", required=True, help="the serving base's Containerfile")
    appended = parts.add_parser(
        "append", help="append the Bento to the base as a layer, push, write image.json"
    )
    appended.add_argument("--bento", required=True, help="the exported Bento")
    appended.add_argument("--base", required=True, help="the serving base image, as `base` prints it")
    appended.add_argument("--lock", required=True, help="the base's lock, to check the Bento against")
    image = parts.add_parser("image", help="build the image of an exported Bento, saved as an OCI archive")
    image.add_argument("--bento", required=True, help="the exported Bento")
    image.add_argument("--out", required=True, help=f"folder for {ARCHIVE_FILE}")
    push = parts.add_parser("push", help="push an OCI archive to the registry, write image.json")
    push.add_argument("--archive", required=True, help="the image, as `image` saved it")
    for part in (appended, push):
        part.add_argument("--registry", required=True, help="where the image goes, e.g. ghcr.io/octo-org")
        part.add_argument("--out", required=True, help="folder for image.json")
    for part in (appended, image, push):
        part.add_argument("--sha", required=True, help="the commit: the image's tag")
    return parser


def run_part(args: argparse.Namespace) -> str:
    """Run the part the arguments name and return what it did, in one line."""
    if args.part == "bento":
        exported = export_bento(Path(args.project), Path(args.out), args.sha, args.report_url)
        return f"exported {exported}"
    if args.part == "check":
        check_bento(Path(args.bento), Path(args.lock))
        return f"the serving base's lock {args.lock} satisfies the Bento's requirements"
    if args.part == "base":
        return base_image(args.registry, SERVICE, Path(args.lock), Path(args.containerfile))
    if args.part == "image":
        return f"saved {image_from_bento(Path(args.bento), args.sha, Path(args.out))}"
    plan = BuildPlan(args.registry, args.sha)
    if args.part == "append":
        pushed = append_bento(Path(args.bento), args.base, Path(args.lock), plan, Path(args.out))
    else:
        pushed = push_oci_archive(Path(args.archive), plan, Path(args.out))
    return f"pushed {pushed['tag']} ({pushed['digest']})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one part of the build, as deploy.yml's jobs do."""
    command = parser()
    args = command.parse_args(argv)
    if getattr(args, "sha", None) is not None and not COMMIT.match(args.sha):
        command.error(f"--sha {args.sha!r} is not a commit SHA")
    try:
        print(run_part(args))
    except ProvenanceError as error:
        print(f"deploy.build: the Bento's provenance: {error}", file=sys.stderr)
        return 1
    except DependenciesDiffer as error:
        print(f"deploy.build: {error}", file=sys.stderr)
        return DEPENDENCIES_DIFFER
    except (RuntimeError, ValueError, OSError, EOFError, tarfile.TarError, httpx.HTTPError) as error:
        print(f"deploy.build: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
