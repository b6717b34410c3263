"""A warm start: train.yml's own steps, run here against the shared cache (ORBIT_CACHE) as the pods mount it.

The push job adds what it hashed to the shared cache (objects only: never a run-cache entry, which
would map a stage's inputs to outputs the PR's job claimed); the pull job fetches into it; the train
job copies what its dvc.lock names out of it, so a retrain that changes only `train.*` restores
generate and prepare and runs only train and evaluate.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import validate

from runner.classes import default_classes
from runner.podspec import RunnerJob, cache_folder, pod_manifest
from tests.deploy.test_workflows import content_addressed, load, outputs_as_uploaded, run_step, workspace

__all__ = ["workspace"]  # the fixture, used by name

TRAIN_ONLY = {"train", "evaluate"}


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def changed_train_params(trained_project: Path, destination: Path) -> Path:
    """Return a clone of the trained project whose PR changes only `train.lr`, with the base's dvc.lock."""
    subprocess.run(["git", "clone", "-q", str(trained_project), str(destination)], check=True)
    shutil.copy(trained_project / "dvc.lock", destination / "dvc.lock")
    params = yaml.safe_load((destination / "params.yaml").read_text())
    params["train"]["lr"] = params["train"]["lr"] * 2
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return destination


@pytest.mark.slow
def test_a_warm_retrain_of_train_params_runs_only_train_and_evaluate(
    trained_project: Path, tmp_path: Path, workspace: tuple[Path, dict[str, str]]
) -> None:
    work, env = workspace
    temp, shared = Path(env["RUNNER_TEMP"]), tmp_path / "shared"
    data_env = {**env, "ORBIT_CACHE": str(shared)}  # an orbit-data pod: read-write
    workflow = load("train.yml")

    # The base's run: the push job hashes its outputs and adds them to the shared cache.
    outputs_as_uploaded(trained_project, temp / "orbit-outputs")
    for name in ("Hash the outputs here", "Push outputs", "Add what was hashed here"):
        result = run_step(workflow, "push", name, work, data_env)
        assert result.returncode == 0, result.stdout + result.stderr
    added = content_addressed(shared / "dvc")
    assert added, "the base's outputs are in the shared cache"
    assert not (shared / "dvc/runs").exists(), "no run-cache entry: they map inputs to what a PR claimed"
    assert (temp / "dvc-cache/runs").exists(), "dvc commit made some, in the push pod's own cache"

    # The PR's train job: only what its dvc.lock names is copied out of the shared cache.
    pr = changed_train_params(trained_project, tmp_path / "pr")
    (temp / "orbit-data/cache").mkdir(parents=True)
    result = run_step(workflow, "train", "Check out the pulled data", pr, {**env, "ORBIT_CACHE": str(shared)})
    assert result.returncode == 0, result.stdout + result.stderr
    repro = subprocess.run(["dvc", "repro"], cwd=pr, env=env, capture_output=True, text=True, check=False)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert stages_run(repro.stdout) == TRAIN_ONLY, repro.stdout
    assert content_addressed(shared / "dvc") == added, "the train job added nothing to the shared cache"


@pytest.mark.slow
def test_without_the_shared_cache_every_stage_runs(
    trained_project: Path, tmp_path: Path, workspace: tuple[Path, dict[str, str]]
) -> None:
    _, env = workspace
    pr = changed_train_params(trained_project, tmp_path / "pr")
    (Path(env["RUNNER_TEMP"]) / "orbit-data/cache").mkdir(parents=True)
    result = run_step(load("train.yml"), "train", "Check out the pulled data", pr, env)
    assert result.returncode == 0, result.stdout + result.stderr
    repro = subprocess.run(["dvc", "repro"], cwd=pr, env=env, capture_output=True, text=True, check=False)
    assert stages_run(repro.stdout) == {"generate", "prepare", *TRAIN_ONLY}, (
        "the cold case the warm one beats"
    )


@pytest.mark.slow
def test_the_pull_job_fetches_into_the_shared_cache_and_hands_on_no_data(
    trained_project: Path, tmp_path: Path, workspace: tuple[Path, dict[str, str]]
) -> None:
    work, env = workspace
    temp, remote, shared = Path(env["RUNNER_TEMP"]), tmp_path / "remote", tmp_path / "shared"
    workflow = load("train.yml")
    outputs_as_uploaded(trained_project, temp / "orbit-outputs")
    for name in ("Hash the outputs here", "Push outputs"):  # the base's outputs on the remote
        assert run_step(workflow, "push", name, work, env).returncode == 0
    pr = work / "pr"
    subprocess.run(["git", "clone", "-q", str(trained_project), str(pr)], check=True)
    shutil.copy(trained_project / "dvc.lock", pr / "dvc.lock")
    sha = subprocess.run(
        ["git", "-C", str(pr), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    pull_env = {**env, "SHA": sha, "ORBIT_CACHE": str(shared)}
    for name in ("Check out the exact commit", "Use the default branch's DVC config", "Pull data"):
        result = run_step(workflow, "pull", name, work, pull_env)
        assert result.returncode == 0, result.stdout + result.stderr
    assert content_addressed(shared / "dvc") == content_addressed(remote), "all of it, from the remote"
    assert list((temp / "orbit-data/cache").iterdir()) == [], "the train job reads the shared cache instead"
    assert (temp / "orbit-data/commit").read_text().strip() == sha


# --- the pods: who mounts the shared cache, and how ----------------------------------------------

CLASSES = default_classes(
    "gpu:1", "nvidia.com/gpu", 2, cpu_image="cpu:1", build_namespace="orbit-builds", cache_claim="orbit-cache"
)


def pod_of(label: str, repo: str = "Octo-Org/model", installation: int = 42) -> dict[str, Any]:
    job = RunnerJob(repo, job_id=555, run_id=77, pull_number=7, labels=("self-hosted", label))
    return pod_manifest(job, CLASSES[label], installation)


def cache_of(pod: dict[str, Any]) -> tuple[list[Any], list[Any], list[Any]]:
    spec = pod["spec"]
    (container,) = spec["containers"]
    volumes = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    mounts = [m for m in container["volumeMounts"] if m["name"] == "cache"]
    env = [e for e in container["env"] if e["name"] == "ORBIT_CACHE"]
    return volumes, mounts, env


@pytest.mark.parametrize(("label", "read_only"), [("orbit-data", False), ("orbit-gpu", True)])
def test_the_repositorys_own_folder_is_mounted_read_write_only_where_no_pr_code_runs(
    label: str, read_only: bool
) -> None:
    pod = pod_of(label)
    volumes, mounts, env = cache_of(pod)
    assert volumes == [
        {"name": "cache", "persistentVolumeClaim": {"claimName": "orbit-cache", "readOnly": read_only}}
    ]
    assert mounts == [
        {
            "name": "cache",
            "mountPath": "/var/cache/orbit",
            "subPath": "42/octo-org/model",
            "readOnly": read_only,
        }
    ]
    assert env == [{"name": "ORBIT_CACHE", "value": "/var/cache/orbit"}]
    validate(pod, "1.30.0", strict=True)


@pytest.mark.parametrize("label", ["orbit-cpu", "orbit-build"])
def test_the_classes_that_build_a_prs_bento_never_see_the_shared_cache(label: str) -> None:
    assert cache_of(pod_of(label)) == ([], [], [])


def test_without_a_claim_no_pod_mounts_anything_but_scratch_space() -> None:
    classes = default_classes("gpu:1", "nvidia.com/gpu", 2)
    for klass in classes.values():
        job = RunnerJob(
            "octo-org/model", job_id=1, run_id=2, pull_number=3, labels=("self-hosted", klass.label)
        )
        assert cache_of(pod_manifest(job, klass, 42)) == ([], [], [])


@pytest.mark.parametrize(
    ("repo", "installation", "folder"),
    [
        ("octo-org/model", 42, "42/octo-org/model"),
        ("Octo-Org/My.Model_2", 7, "7/octo-org/my.model_2"),  # GitHub's names are case-insensitive
        ("octo-org/..", 42, None),
        ("octo-org/.hidden", 42, None),
        ("octo/org/model", 42, None),
        ("octo-org/model", 0, None),  # no installation: no folder to tell tenants apart
    ],
)
def test_a_repositorys_folder_is_its_installations_and_names_no_other_path(
    repo: str, installation: int, folder: str | None
) -> None:
    assert cache_folder(repo, installation) == folder
