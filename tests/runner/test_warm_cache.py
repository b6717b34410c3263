"""A warm start: train.yml's own steps, run here against the shared cache (ORBIT_CACHE) as the pods mount it.

The push job adds what it hashed to the shared cache (objects only: never a run-cache entry, which
would map a stage's inputs to outputs the PR's job claimed); the pull job fetches into it; the train
job copies what its dvc.lock names out of it, so a retrain that changes only `train.*` restores
generate and prepare and runs only train and evaluate.
"""

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import validate

from runner.cache_verify import imports, main, share
from runner.classes import default_classes
from runner.podspec import RunnerJob, cache_folder, pod_manifest
from tests.deploy.test_workflows import (
    content_addressed,
    load,
    objects,
    outputs_as_uploaded,
    run_step,
    workspace,
)

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
    result = pull(work, pull_env, PULL_STEPS)  # defined below, with the attacks on this job
    assert result.returncode == 0, result.stdout + result.stderr
    assert content_addressed(shared / "dvc") == content_addressed(remote), "all of it, from the remote"
    assert list((temp / "orbit-data/cache").iterdir()) == [], "the train job reads the shared cache instead"
    assert (temp / "orbit-data/commit").read_text().strip() == sha


# --- what the pull job lets into the shared cache: objects named by their md5, and no import -------

HONEST, EVIL = b"the base's honest model\n", b"EVIL model bytes, filed under the honest model's hash\n"
H = hashlib.md5(HONEST).hexdigest()


def put(store: Path, name: str, data: bytes) -> Path:
    """File bytes in a DVC 3 cache or local remote under a name (`.dir` kept), whatever their md5."""
    path = store / "files/md5" / name[:2] / name[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_share_moves_objects_named_by_their_md5_and_their_dir_listings(tmp_path: Path) -> None:
    fetched, shared = tmp_path / "fetched", tmp_path / "shared"
    listing = b'[{"md5": "' + H.encode() + b'", "relpath": "model.bin"}]'
    put(fetched, H, HONEST)
    put(fetched, hashlib.md5(listing).hexdigest() + ".dir", listing)  # DVC 3: the md5 of these bytes
    result = share(fetched, shared)
    assert (len(result.added), result.present, result.refused, result.kept) == (2, [], [], [])
    assert content_addressed(shared) == {H: HONEST, hashlib.md5(listing).hexdigest(): listing}
    assert list(fetched.iterdir()) == [], "what the shared cache holds is not handed on as well"


def test_share_refuses_an_object_whose_bytes_are_not_its_name(tmp_path: Path) -> None:
    fetched, shared = tmp_path / "fetched", tmp_path / "shared"
    put(fetched, H, EVIL)
    put(fetched, "0" * 32 + ".dir", b"[]")
    result = share(fetched, shared)
    assert sorted(result.refused) == sorted(
        [f"files/md5/{H[:2]}/{H[2:]}", "files/md5/00/" + "0" * 30 + ".dir"]
    )
    assert result.added == [] and objects(shared) == {}
    assert main(["share", str(fetched), str(shared)]) == 1, "the pull job fails"


def test_share_never_overwrites_an_object_the_shared_cache_holds(tmp_path: Path) -> None:
    fetched, shared = tmp_path / "fetched", tmp_path / "shared"
    put(shared, H, HONEST)
    put(fetched, H, HONEST)
    assert share(fetched, shared).present == [f"{H[:2]}/{H[2:]}"]
    assert objects(shared) == {H: HONEST} and objects(fetched) == {}


def test_share_hands_dvc_2_objects_on_to_this_run_only(tmp_path: Path) -> None:
    fetched, shared = tmp_path / "fetched", tmp_path / "shared"
    legacy = fetched / H[:2] / H[2:]  # DVC 2's layout, whose md5 is of text with its line ends changed
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(HONEST)
    result = share(fetched, shared)
    assert (result.kept, result.refused, result.added) == ([f"{H[:2]}/{H[2:]}"], [], [])
    assert legacy.read_bytes() == HONEST and not shared.exists()


def import_of(url: Path, rev: str, out: str = "stolen.bin") -> str:
    """The `.dvc` file `dvc import` writes: an output whose bytes come from another repository."""
    return (
        f"md5: 0123\nfrozen: true\ndeps:\n- path: model.bin\n  repo:\n    url: {url}\n"
        f"    rev_lock: {rev}\nouts:\n- md5: {H}\n  size: {len(HONEST)}\n  hash: md5\n  path: {out}\n"
    )


def test_imports_names_each_dependency_on_another_repository(tmp_path: Path) -> None:
    project = tmp_path / "pr"
    (project / "data/deeper").mkdir(parents=True)
    (project / "data/deeper/x.dvc").write_text(import_of(tmp_path / "attacker", "a" * 40))
    (project / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: python train.py\n    deps:\n"
        f"    - path: model.bin\n      repo: {{url: {tmp_path}, rev_lock: {'b' * 40}}}\n"
    )
    (project / "honest.dvc").write_text(f"outs:\n- md5: {H}\n  hash: md5\n  path: honest.bin\n")
    (project / "not.dvc").write_text("outs: [unclosed\n")
    assert imports(project) == [
        "'dvc.lock': imports 'model.bin' from another repository",
        "'not.dvc': not YAML that this check can read (ParserError)",
        "'data/deeper/x.dvc': imports 'model.bin' from another repository",
    ]
    (project / "data/deeper/x.dvc").unlink()
    (project / "dvc.lock").unlink()
    (project / "not.dvc").unlink()
    assert imports(project) == [] and main(["imports", str(project)]) == 0


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def committed_repo(folder: Path, files: dict[str, str], env: dict[str, str]) -> str:
    """Make a git repository of these files and return its commit."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    git("init", "-q", "-b", "main", cwd=folder)
    subprocess.run(["git", "add", "-A"], cwd=folder, check=True, env=env)
    author = ["-c", "user.name=x", "-c", "user.email=x@localhost"]
    subprocess.run(["git", *author, "commit", "-qm", "c"], cwd=folder, check=True, env=env)
    return git("rev-parse", "HEAD", cwd=folder)


def attacker_repo(tmp_path: Path, env: dict[str, str]) -> tuple[Path, str]:
    """An attacker's DVC repository whose own remote files EVIL under the md5 of HONEST."""
    repo, remote = tmp_path / "attacker", tmp_path / "attacker-remote"
    put(remote, H, EVIL)
    rev = committed_repo(
        repo,
        {
            ".dvc/config": f"[core]\n    remote = r\n['remote \"r\"']\n    url = {remote}\n",
            "model.bin.dvc": f"outs:\n- md5: {H}\n  size: {len(HONEST)}\n  hash: md5\n  path: model.bin\n",
        },
        env,
    )
    return repo, rev


PULL_STEPS = (
    "Check out the exact commit",
    "Use the default branch's DVC config",
    "Refuse DVC imports",
    "Pull data",
    "Add what was fetched to the shared cache",
)


def pull(work: Path, env: dict[str, str], steps: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Run the pull job's steps in order, stopping at the first that fails, as the runner does."""
    workflow = load("train.yml")
    for name in steps:
        result = run_step(workflow, "pull", name, work, env)
        if result.returncode != 0:
            return result
    return result


@pytest.mark.slow
def test_a_prs_dvc_import_never_files_its_bytes_in_the_shared_cache(
    tmp_path: Path, workspace: tuple[Path, dict[str, str]]
) -> None:
    work, env = workspace
    shared = tmp_path / "shared"
    attacker, rev = attacker_repo(tmp_path, env)
    sha = committed_repo(work / "pr", {"stolen.bin.dvc": import_of(attacker, rev)}, env)
    pull_env = {**env, "SHA": sha, "ORBIT_CACHE": str(shared)}

    result = pull(work, pull_env, PULL_STEPS)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "::error::'stolen.bin.dvc': imports 'model.bin' from another repository" in result.stdout
    assert H not in objects(shared / "dvc")

    # Past the guard (an import it missed), the bytes still never reach the shared cache.
    result = pull(work, pull_env, tuple(s for s in PULL_STEPS if s != "Refuse DVC imports"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is not named by the md5 of its bytes: kept out of the shared cache" in result.stdout
    assert objects(Path(env["RUNNER_TEMP"]) / "orbit-data/cache") == {H: EVIL}, "DVC fetched the import"
    assert H not in objects(shared / "dvc")

    # Today's pull job fetched straight into the shared cache: the attack is real.
    cache = tmp_path / "todays-shared"
    subprocess.run(
        ["dvc", "config", "--local", "cache.dir", str(cache)], cwd=work / "pr", env=env, check=True
    )
    subprocess.run(["dvc", "fetch"], cwd=work / "pr", env=env, check=True, capture_output=True)
    assert objects(cache) == {H: EVIL}, "the import's bytes under the honest hash, unchecked"


@pytest.mark.slow
def test_honest_objects_land_in_the_shared_cache_once_and_are_copied_from_it_after(
    tmp_path: Path, workspace: tuple[Path, dict[str, str]]
) -> None:
    work, env = workspace
    shared, remote = tmp_path / "shared", tmp_path / "remote"
    put(remote, H, HONEST)  # pushed by an earlier run's push job
    honest = f"outs:\n- md5: {H}\n  size: {len(HONEST)}\n  hash: md5\n  path: model.bin\n"
    sha = committed_repo(work / "pr", {"model.bin.dvc": honest}, env)
    pull_env = {**env, "SHA": sha, "ORBIT_CACHE": str(shared)}
    result = pull(work, pull_env, PULL_STEPS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shared cache: 1 added, 0 already there" in result.stdout
    assert content_addressed(shared / "dvc") == {H: HONEST}
    assert list((Path(env["RUNNER_TEMP"]) / "orbit-data/cache").iterdir()) == []

    shutil.rmtree(remote)  # the next run finds it in the shared cache: nothing is downloaded
    result = pull(work, pull_env, PULL_STEPS[1:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shared cache: 0 added, 1 already there" in result.stdout


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
        ("octo-org/model", 1, "1/octo-org/model"),  # the first installation is one like the others
        ("octo-org/model", 0, None),  # no installation: no folder to tell tenants apart
    ],
)
def test_a_repositorys_folder_is_its_installations_and_names_no_other_path(
    repo: str, installation: int, folder: str | None
) -> None:
    assert cache_folder(repo, installation) == folder
