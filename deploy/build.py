"""`orbit deploy build`: the Bento, its image built without a Docker daemon, pushed, and recorded.

Runs inside deploy.yml on an orbit-cpu runner: `bentoml build`, then `bentoml containerize` with
the buildah backend (CPU torch only: the served model needs no CUDA libraries), then `buildah push`
to the registry tagged with the commit, and `image.json` (repository and digest) for the bot.
Registry credentials come from the environment and go to buildah on stdin, never on a command line.
"""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bot.processes import LocalRunError, run_step, tool
from deploy.manifests import SERVICE
from model import MODEL_NAME


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


def build_image(project: Path, plan: BuildPlan, out: Path) -> dict[str, str]:
    """Build the Bento and its image, push it, and write image.json into `out`."""
    run_step("bentoml build", [tool("bentoml"), "build", "--output", "tag"], project)
    run_step(
        "containerize without a Docker daemon",
        [
            tool("bentoml"),
            "containerize",
            f"{MODEL_NAME}:latest",
            "--backend",
            "buildah",
            "--image-tag",
            plan.tag,
        ],
        project,
    )
    login(plan.registry)
    out.mkdir(parents=True, exist_ok=True)
    digest_file = out / "digest"
    run_step(
        "push",
        ["buildah", "push", "--digestfile", str(digest_file), plan.tag, f"docker://{plan.tag}"],
        project,
    )
    image = {"image": plan.repository, "digest": digest_file.read_text().strip(), "tag": plan.tag}
    (out / "image.json").write_text(json.dumps(image, indent=2) + "\n")
    digest_file.unlink()
    return image
