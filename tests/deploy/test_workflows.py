"""The workflows orbit dispatches keep a pull request's code away from every secret (DESIGN.md, Trust).

What "runs PR code" means here, precisely (`runs_pr_code`):

- A job *reads PR content* when it checks out a pull request's ref (`refs/pull/...`, `github.head_ref`,
  `pull_request.head`), or downloads an artifact that a job reading PR content uploaded (every
  artifact, when it names none).
- A job *executes* when one of its commands runs what it was given rather than reading it: `pip
  install`; `python` without `-I` (it imports from the working directory), and `python -I -m
  deploy.build bento|image` (they build the PR's Bento and its image); `dvc repro` or `dvc exp`;
  `bentoml build`, `containerize` or `serve`; `orbit report build`, `orbit local`, `orbit deploy
  build`; `source` or `.`; a file of the working tree (`./x`); `bash`, `sh`, `make`, `npm`, `npx`,
  `node`, `pytest`, `tox` or `nox` with an argument; a step whose `shell` is not bash/sh; or an action
  of the working tree (`uses: ./...`).
- A job *runs PR code* when it does both. Reading PR content as data (`git checkout`, `cp`, `dvc
  fetch` with the default branch's config, `dvc commit` of files, `python -I -m deploy.build push`
  of an image archive, `check`/`base`/`append` of an exported Bento: its requirements read, its
  files packed into a layer) is not running it.

Then: a job that runs PR code references no `secrets.*`, no `vars.*`, no `environment`, and has no
permission but `contents: read`; a job that references a secret runs no PR code. Both are checked on
this repository's workflows and on planted bad ones (today's, among them), so that the definition
is shown to catch what it should.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.runs import DeployRun, TrainingRun, deploy_run, training_job_name, training_job_pull, training_run
from tests.github_git_double import render_run_name

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
ORBIT = {"train.yml", "deploy.yml"}  # the workflows the bot dispatches
CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683"
UPLOAD = "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02"
DOWNLOAD = "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093"
SHA_CHECK = '[[ "$SHA" =~ ^[0-9a-f]{40}$ ]]'
Job = dict[str, Any]
Workflow = dict[Any, Any]  # PyYAML reads `on` as the key True


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    executable = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert executable, f"{name} is not installed"
    return subprocess.run([str(executable), *args], cwd=ROOT, capture_output=True, text=True, check=False)


def load(name: str) -> Workflow:
    workflow: Workflow = yaml.safe_load((ROOT / ".github/workflows" / name).read_text())
    return workflow


def steps(job: Job) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = job.get("steps") or []
    return found


def step(workflow: Workflow, job: str, name: str) -> dict[str, Any]:
    [found] = [s for s in steps(workflow["jobs"][job]) if s.get("name", "").startswith(name)]
    return found


# --- what a job reads, runs and holds ------------------------------------------------------------

PR_REF = re.compile(r"refs/pull/|github\.head_ref|pull_request\.head")
SEPARATORS = re.compile(r"&&|\|\||[;|\n]")
KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "time", "!", "{", "}"}
RUNS_ITS_ARGUMENT = {"bash", "sh", "make", "npm", "npx", "node", "pytest", "tox", "nox"}


def split_substitutions(script: str) -> tuple[str, list[str]]:
    """Return the script with each `$( ... )` (balanced) replaced by a word, and what each held."""
    outer, inner, depth, start, i = [], [], 0, 0, 0
    while i < len(script):
        if script.startswith("$(", i):
            if depth == 0:
                outer.append(script[start:i])
                start = i + 2
            depth, i = depth + 1, i + 2
            continue
        if script[i] == "(" and depth:
            depth += 1
        elif script[i] == ")" and depth:
            depth -= 1
            if depth == 0:
                inner.append(script[start:i])
                outer.append("SUBSTITUTED")
                start = i + 1
        i += 1
    outer.append(script[start:])
    return "".join(outer), inner


def commands(script: str) -> Iterator[list[str]]:
    """Yield each simple command of a shell script as its words (command substitutions included)."""
    outer, inner = split_substitutions(script.replace("\\\n", " "))
    for text in [outer, *inner]:
        if "$(" in text:
            yield from commands(text)
            continue
        for part in SEPARATORS.split(text):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                words = part.split()
            while words and (words[0] in KEYWORDS or re.match(r"^\w+=", words[0])):
                words = words[1:]  # keywords and leading assignments: the command comes after
            if words:
                yield words


def executes(words: list[str]) -> bool:
    """Return whether a command runs what it is given (see the module's docstring)."""
    program, args = Path(words[0]).name, words[1:]
    if program.startswith("python"):
        return "-I" not in args[:1] or (
            args[1:3] == ["-m", "deploy.build"] and args[3:4] in (["bento"], ["image"])
        )
    if program in ("pip", "pip3"):
        return args[:1] == ["install"]
    if program == "dvc":
        return args[:1] in (["repro"], ["exp"])
    if program == "bentoml":
        return args[:1] in (["build"], ["containerize"], ["serve"])
    if program == "orbit":
        return args[:2] in (["report", "build"], ["deploy", "build"]) or args[:1] == ["local"]
    if program in ("source", ".") or words[0].startswith("./"):
        return True
    return program in RUNS_ITS_ARGUMENT and bool(args)


def job_executes(job: Job) -> bool:
    for s in steps(job):
        if str(s.get("uses", "")).startswith("./"):
            return True
        if "run" in s and s.get("shell", "bash").split()[0] not in ("bash", "sh"):
            return True
        if any(executes(words) for words in commands(str(s.get("run", "")))):
            return True
    return False


def uploads(job: Job) -> set[str]:
    return {
        s["with"]["name"] for s in steps(job) if str(s.get("uses", "")).startswith("actions/upload-artifact@")
    }


def downloads(job: Job) -> set[str | None]:
    return {
        (s.get("with") or {}).get("name")
        for s in steps(job)
        if str(s.get("uses", "")).startswith("actions/download-artifact@")
    }


def checks_out_pr(job: Job) -> bool:
    return any(
        str(s.get("uses", "")).startswith("actions/checkout@")
        and PR_REF.search(str((s.get("with") or {}).get("ref", "")))
        for s in steps(job)
    )


def reading_pr_content(workflow: Workflow) -> set[str]:
    """Return the jobs that read PR content: its checkout, or an artifact of a job that read it."""
    jobs: dict[str, Job] = workflow["jobs"]
    reading = {name for name, job in jobs.items() if checks_out_pr(job)}
    while True:
        tainted = {artifact for name in reading for artifact in uploads(jobs[name])}
        more = {
            name
            for name, job in jobs.items()
            if any(artifact is None or artifact in tainted for artifact in downloads(job)) and tainted
        }
        if more <= reading:
            return reading
        reading |= more


def runs_pr_code(workflow: Workflow) -> set[str]:
    """Return the jobs that run PR code: they read PR content and execute (see the module's docstring)."""
    return {name for name in reading_pr_content(workflow) if job_executes(workflow["jobs"][name])}


def holds_secrets(job: Job) -> bool:
    return "secrets." in json.dumps(job) or "secrets" in job


def effective_permissions(workflow: Workflow, job: Job) -> Any:
    return job.get("permissions", workflow.get("permissions"))


def violations(workflow: Workflow) -> list[str]:
    """Return what breaks the rule: PR code with a secret, a credential, an environment or a write token."""
    found = []
    for name in sorted(runs_pr_code(workflow)):
        job = workflow["jobs"][name]
        text = json.dumps(job)
        if holds_secrets(job):
            found.append(f"{name} runs PR code and references a secret")
        if "vars." in text:
            found.append(f"{name} runs PR code and references a variable")
        if "environment" in job:
            found.append(f"{name} runs PR code in an environment")
        permissions = effective_permissions(workflow, job)
        if not isinstance(permissions, dict) or not set(permissions.items()) <= {("contents", "read")}:
            found.append(f"{name} runs PR code with the permissions {permissions!r}")
    return found


# --- the rule, on planted bad workflows first: the definition catches what it should --------------

PR_CHECKOUT = {
    "uses": CHECKOUT,
    "with": {"ref": "refs/pull/${{ inputs.pr }}/head", "persist-credentials": False},
}
DVC_KEYS = {"AWS_ACCESS_KEY_ID": "${{ secrets.DVC_AWS_ACCESS_KEY_ID }}"}
READ = {"contents": "read"}


def planted(**jobs: Job) -> Workflow:
    return {
        "permissions": {},
        "jobs": {name: {"runs-on": ["self-hosted", "orbit-cpu"], **job} for name, job in jobs.items()},
    }


def upload(name: str) -> dict[str, Any]:
    return {"uses": UPLOAD, "with": {"name": name, "path": "x"}}


def download(name: str) -> dict[str, Any]:
    return {"uses": DOWNLOAD, "with": {"name": name, "path": "x"}}


TODAYS_TRAIN = planted(
    train={
        "permissions": READ,
        "steps": [
            PR_CHECKOUT,
            {"run": "python -m pip install --no-deps --editable ."},
            {"run": "dvc pull --allow-missing", "env": DVC_KEYS},
            {"run": 'dvc repro 2>&1 | tee "$RUNNER_TEMP/repro.log"'},
            {"run": "dvc push", "env": DVC_KEYS},
        ],
    }
)
TODAYS_DEPLOY = planted(
    build={
        "permissions": READ,
        "steps": [
            PR_CHECKOUT,
            {"run": "python -m pip install --no-deps --editable ."},
            {
                "run": 'orbit deploy build --registry "$REGISTRY" --sha "$SHA" --out "$RUNNER_TEMP/o"',
                "env": {
                    "REGISTRY": "${{ vars.ORBIT_REGISTRY }}",
                    "P": "${{ secrets.ORBIT_REGISTRY_PASSWORD }}",
                },
            },
        ],
    }
)
BAD = {
    "today's train.yml: install, repro and the DVC keys in one job": TODAYS_TRAIN,
    "today's deploy.yml: bentoml build and the registry password in one job": TODAYS_DEPLOY,
    "a push job that runs dvc repro on the outputs it was handed": planted(
        train={"permissions": READ, "steps": [PR_CHECKOUT, {"run": "dvc repro"}, upload("orbit-outputs")]},
        push={
            "needs": "train",
            "permissions": READ,
            "steps": [download("orbit-outputs"), {"run": "dvc repro && dvc push", "env": DVC_KEYS}],
        },
    ),
    "an image job that builds the PR's Bento with the registry password": planted(
        bento={"permissions": READ, "steps": [PR_CHECKOUT, {"run": "bentoml build"}, upload("orbit-bento")]},
        image={
            "needs": "bento",
            "permissions": {},
            "steps": [
                download("orbit-bento"),
                {
                    "run": "python -I -m deploy.build image --bento b --sha s --out o",
                    "env": {"P": "${{ secrets.P }}"},
                },
            ],
        },
    ),
    "a job that downloads every artifact and builds what it got": planted(
        bento={"permissions": READ, "steps": [PR_CHECKOUT, {"run": "bentoml build"}, upload("orbit-bento")]},
        image={
            "needs": "bento",
            "permissions": {},
            "steps": [
                {"uses": DOWNLOAD},
                {"run": "bentoml containerize x", "env": {"P": "${{ secrets.P }}"}},
            ],
        },
    ),
    "the PR job in an environment": planted(
        train={"permissions": READ, "environment": "preview", "steps": [PR_CHECKOUT, {"run": "dvc repro"}]}
    ),
    "the PR job with a write token": planted(
        train={"permissions": {"contents": "write"}, "steps": [PR_CHECKOUT, {"run": "dvc repro"}]}
    ),
    "the PR job with the default token": {
        "jobs": {"train": {"runs-on": "x", "steps": [PR_CHECKOUT, {"run": "orbit report build --out r"}]}}
    },
    "the PR job with a variable": planted(
        train={
            "permissions": READ,
            "steps": [PR_CHECKOUT, {"run": "dvc repro", "env": {"R": "${{ vars.ORBIT_REGISTRY }}"}}],
        }
    ),
    "a job that sources a file of the PR, with a secret": planted(
        train={
            "permissions": READ,
            "steps": [PR_CHECKOUT, {"run": "source env.sh\ndvc fetch", "env": DVC_KEYS}],
        }
    ),
    "a job that runs a module of the PR, with a secret": planted(
        train={"permissions": READ, "steps": [PR_CHECKOUT, {"run": "python -m model.train", "env": DVC_KEYS}]}
    ),
    "a job that runs an action of the PR, with a secret": planted(
        train={"permissions": READ, "steps": [PR_CHECKOUT, {"uses": "./.github/actions/x", "env": DVC_KEYS}]}
    ),
    "a job that pip installs inside a command substitution, with a secret": planted(
        train={"permissions": READ, "steps": [PR_CHECKOUT, {"run": 'x="$(pip install .)"', "env": DVC_KEYS}]}
    ),
}
GOOD = {
    "a pull job: the PR as data, trusted dvc": planted(
        pull={
            "permissions": READ,
            "steps": [
                PR_CHECKOUT,
                {
                    "run": "rm -rf pr/.dvc\ncp trusted/.dvc/config pr/.dvc/config\ncd pr && dvc fetch",
                    "env": DVC_KEYS,
                },
            ],
        }
    ),
    "a push job: an archive built elsewhere, pushed as it is": planted(
        image={
            "permissions": {},
            "steps": [PR_CHECKOUT, {"run": "bentoml containerize x"}, upload("archive")],
        },
        push={
            "needs": "image",
            "permissions": {},
            "steps": [
                download("archive"),
                {"run": "python -I -m deploy.build push --archive a", "env": {"P": "${{ secrets.P }}"}},
            ],
        },
    ),
    "trusted code with a secret: no PR content at all": planted(
        job={
            "permissions": READ,
            "steps": [{"uses": CHECKOUT}, {"run": "pip install . && make", "env": DVC_KEYS}],
        }
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_the_rule_catches_each_planted_bad_workflow(case: str) -> None:
    assert violations(BAD[case]), f"not caught: {case}"
    secret_jobs = {name for name, job in BAD[case]["jobs"].items() if holds_secrets(job)}
    assert secret_jobs <= runs_pr_code(BAD[case]), "each job that holds a secret here runs PR code"


@pytest.mark.parametrize("case", GOOD)
def test_the_rule_lets_data_only_jobs_hold_secrets(case: str) -> None:
    assert violations(GOOD[case]) == []


@pytest.mark.parametrize(
    ("words", "runs"),
    [
        ('"$RUNNER_TEMP/pr-venv/bin/python" -m pip install --no-deps --editable .', True),
        ("python -I -m venv x", False),
        ("python -I -m deploy.build push --archive a", False),
        ("python -I -m deploy.build bento --project .", True),
        ("python -c 'import sysconfig'", True),
        ("dvc repro", True),
        ("dvc fetch", False),
        ("dvc commit --force", False),
        ("bentoml build", True),
        ("orbit report build --out r", True),
        ("./train.sh", True),
        ("git -C pr checkout --detach abc", False),
        ("find . -type l -print -quit", False),
    ],
)
def test_what_executes(words: str, runs: bool) -> None:
    assert any(executes(command) for command in commands(words)) is runs


# --- the rule, on this repository's workflows ----------------------------------------------------


def test_each_job_that_runs_pr_code_holds_no_secret_no_variable_no_environment_and_no_write_token() -> None:
    for name in ORBIT:
        assert violations(load(name)) == [], name
    assert runs_pr_code(load("train.yml")) == {"train"}
    assert runs_pr_code(load("deploy.yml")) == {"bento", "image"}


def test_each_job_that_holds_a_secret_runs_no_pr_code() -> None:
    holders = {}
    for name in ORBIT:
        workflow = load(name)
        holders[name] = {job for job, body in workflow["jobs"].items() if holds_secrets(body)}
        assert not holders[name] & runs_pr_code(workflow), name
    assert holders == {
        "train.yml": {"pull", "push"},
        "deploy.yml": {"pull", "push-production", "push-preview"},
    }


def environment_name(job: Job) -> str | None:
    environment = job.get("environment")
    if environment is None:
        return None
    return str(environment.get("name") if isinstance(environment, dict) else environment)


def test_production_credentials_only_in_the_job_that_pushes_production() -> None:
    for name in ORBIT - {"deploy.yml"}:
        assert all("environment" not in job for job in load(name)["jobs"].values()), name
    jobs = load("deploy.yml")["jobs"]
    named = {job: environment_name(body) for job, body in jobs.items() if "environment" in body}
    assert named == {"push-production": "production", "push-preview": "preview"}
    production, preview = jobs["push-production"], jobs["push-preview"]
    pushes_after = "!cancelled() && needs.check.result == 'success' && needs.image.result != 'failure'"
    assert production["if"] == f"${{{{ {pushes_after} && inputs.environment == 'production' }}}}"
    assert preview["if"] == f"${{{{ {pushes_after} && startsWith(inputs.environment, 'pr-') }}}}"
    for job in (production, preview):
        # the bot made the GitHub deployment; a job's own would look newer and supersede it
        assert job["environment"]["deployment"] is False
        assert job["needs"] == ["check", "image"] and job["permissions"] == READ
        commands_run = [words for s in steps(job) for words in commands(str(s.get("run", "")))]
        parts = [words[4] for words in commands_run if words[:4] == ["python", "-I", "-m", "deploy.build"]]
        assert sorted(parts) == ["append", "base", "push"], (
            "a full build's archive, or the Bento appended to the base"
        )
        assert downloads(job) == {"orbit-bento", "orbit-image-archive"}
        assert uploads(job) == {"orbit-image"}, "the job that pushed records the digest"
        [trusted] = [s for s in steps(job) if str(s.get("uses", "")).startswith("actions/checkout@")]
        assert "ref" not in trusted["with"], (
            "the lock and Containerfile that name the base: the default branch's"
        )
        assert trusted["with"]["sparse-checkout"].split() == [
            "requirements/serving.lock",
            "deploy/images/serving-base.Containerfile",
        ]


def test_only_a_bento_the_base_cannot_take_gets_a_full_build_on_the_privileged_build_runners() -> None:
    jobs = load("deploy.yml")["jobs"]
    check, image = jobs["check"], jobs["image"]
    assert check["runs-on"] == ["self-hosted", "orbit-cpu"] and not holds_secrets(check)
    assert not job_executes(check), "the Bento's requirements are read, nothing of it runs"
    [trusted] = [s for s in steps(check) if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert "ref" not in trusted["with"] and trusted["with"]["sparse-checkout"].split() == [
        "requirements/serving.lock"
    ]
    script = step(load("deploy.yml"), "check", "Check its requirements")["run"]
    assert "3) " in script and 'echo "full-build=true" >> "$GITHUB_OUTPUT"' in script
    assert check["outputs"]["full-build"] == "${{ steps.check.outputs.full-build }}"
    assert image["if"] == "${{ needs.check.outputs.full-build == 'true' }}"
    assert image["runs-on"] == ["self-hosted", "orbit-build"] and image["permissions"] == {}
    assert not holds_secrets(image) and "environment" not in image
    assert [job["runs-on"][1] for job in jobs.values() if job["runs-on"][1] == "orbit-build"] == [
        "orbit-build"
    ], "only the full build runs where privileges are granted"


def test_the_check_part_exits_3_for_the_workflow_to_read(tmp_path: Path) -> None:
    from deploy.build import DEPENDENCIES_DIFFER

    script = step(load("deploy.yml"), "check", "Check its requirements")["run"]
    assert DEPENDENCIES_DIFFER == 3
    fake = tmp_path / "python"
    outputs = {}
    for code in (0, 3, 1):
        fake.write_text(f"#!/bin/sh\nexit {code}\n")
        fake.chmod(0o755)
        output = tmp_path / f"output-{code}"
        output.touch()
        env = {
            "PATH": f"{tmp_path}:/usr/bin:/bin",
            "RUNNER_TEMP": str(tmp_path),
            "GITHUB_OUTPUT": str(output),
        }
        result = subprocess.run(
            ["bash", "-e", "-c", script], env=env, capture_output=True, text=True, check=False
        )
        outputs[code] = (result.returncode, output.read_text())
    assert outputs == {0: (0, "full-build=false\n"), 3: (0, "full-build=true\n"), 1: (1, "")}


# --- DVC: the default branch's config, and hashes computed where no PR code ran -------------------


def run_lines(job: Job) -> list[str]:
    return [line.strip() for s in steps(job) for line in str(s.get("run", "")).splitlines()]


@pytest.mark.parametrize("name", sorted(ORBIT))
def test_the_pull_job_reads_the_pr_as_data_with_the_default_branchs_dvc_config(name: str) -> None:
    pull = load(name)["jobs"]["pull"]
    trusted, pr = [s for s in steps(pull) if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert "ref" not in trusted["with"] and trusted["with"]["path"] == "trusted", "the workflow's own commit"
    assert pr["with"]["ref"] == "refs/pull/${{ inputs.pr }}/head" and pr["with"]["path"] == "pr"
    lines = run_lines(pull)
    order = [
        lines.index(line) for line in ("rm -rf pr/.dvc", "cp trusted/.dvc/config pr/.dvc/config", "dvc fetch")
    ]
    assert order == sorted(order), (
        "the PR's .dvc (config, config.local, cache) is gone before dvc reaches a remote"
    )
    assert 'dvc config --local cache.dir "$RUNNER_TEMP/orbit-data/cache"' in lines
    assert uploads(pull) == {"orbit-data"}


def test_the_push_job_hashes_what_it_pushes_itself() -> None:
    jobs = load("train.yml")["jobs"]
    push = jobs["push"]
    assert downloads(push) == {"orbit-outputs"}, "files to hash, never a cache or a hash of the PR job's"
    lines = run_lines(push)
    sequence = [
        'mv dvc.lock "$RUNNER_TEMP/claimed.lock"',
        "rm -rf .dvc .dvcignore",
        "dvc init --no-scm --quiet",
        'cp "$GITHUB_WORKSPACE/trusted/.dvc/config" .dvc/config',
        'dvc config --local cache.dir "$RUNNER_TEMP/dvc-cache"',
        "dvc commit --force",
        "dvc push",
    ]
    order = [lines.index(line) for line in sequence]
    assert order == sorted(order)
    hashing = step(load("train.yml"), "push", "Hash the outputs")
    assert "env" not in hashing, "no key while the outputs are hashed"
    handed = [s for s in steps(jobs["train"]) if (s.get("with") or {}).get("name") == "orbit-outputs"]
    assert [s["with"].get("include-hidden-files", False) for s in handed] == [False], (
        "no .dvc/cache handed on"
    )


# --- the rest of the contract: run names, inputs, runners, pins, env --------------------------------


def test_workflows_pass_zizmor_with_no_finding_of_medium_severity_or_above() -> None:
    result = tool("zizmor", "--offline", "--min-severity", "medium", *map(str, WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


def test_workflows_match_github_actions_schema() -> None:
    result = tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def _render(template: str, inputs: dict[str, str], defaults: dict[str, str] | None = None) -> str:
    return render_run_name(template, inputs, defaults)


def training_job(workflow: Workflow) -> str:
    [name] = [
        job
        for job, body in workflow["jobs"].items()
        if ["dvc", "repro"] in [words[:2] for s in steps(body) for words in commands(str(s.get("run", "")))]
    ]
    return str(name)


@pytest.mark.parametrize(
    ("path", "run"),
    [
        ("train.yml", TrainingRun(7, "abc1234", "main")),
        ("train.yml", TrainingRun(7, "a" * 40, "main", "sweep-1001-3", ("train.lr=0.01", "train.epochs=20"))),
        ("deploy.yml", DeployRun(7, "pr-7", 31, "d" * 40)),
    ],
    ids=["training", "sweep point", "deploy"],
)
def test_each_workflow_keeps_the_run_contract_the_bot_dispatches_and_recognises(
    path: str, run: TrainingRun | DeployRun
) -> None:
    workflow = load(path)
    declared = workflow[True]["workflow_dispatch"]["inputs"]  # PyYAML reads `on` as True
    sweep_only = {"experiment", "set"} if isinstance(run, TrainingRun) and not run.sweep else set()
    if isinstance(run, DeployRun):
        sweep_only = {"report_url"}  # sent only when the commit has a training report (deploy.flow)
    assert set(declared) == set(run.inputs) | sweep_only, "the bot sends only inputs that are declared"
    assert all(declared[name].get("default") == "" for name in sweep_only), "optional: not always sent"
    defaults = {name: str(spec.get("default", "")) for name, spec in declared.items()}
    assert _render(workflow["run-name"], run.inputs, defaults) == run.title
    parsed = training_run(run.title) if isinstance(run, TrainingRun) else deploy_run(run.title)
    assert parsed == (replace(run, base="") if isinstance(run, TrainingRun) else run)
    for job in workflow["jobs"].values():
        assert f"PR #{run.pull}" in _render(job["name"], run.inputs), "each job says its PR, for humans"
    if isinstance(run, TrainingRun):
        trains = workflow["jobs"][training_job(workflow)]
        assert _render(trains["name"], run.inputs) == training_job_name(run.pull)
        assert training_job_pull(training_job_name(run.pull)) == run.pull
        others = [job["name"] for name, job in workflow["jobs"].items() if job is not trains]
        assert all(training_job_pull(_render(name, run.inputs)) is None for name in others)


@pytest.mark.parametrize("name", sorted(ORBIT))
def test_each_job_is_pinned_bounded_least_privileged_and_takes_inputs_through_env(name: str) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {}
    assert "concurrency" not in workflow, "group names are shared: a fork could cancel orbit's runs"
    for job_name, job in workflow["jobs"].items():
        assert job["runs-on"][0] == "self-hosted" and job["runs-on"][1] in (
            "orbit-gpu",
            "orbit-cpu",
            "orbit-data",
            "orbit-build",
        )
        assert isinstance(job["timeout-minutes"], int), job_name
        assert job["permissions"] in ({}, {"contents": "read"}), job_name
        uses_sha = False
        for s in steps(job):
            assert "${{" not in s.get("run", ""), "inputs reach scripts through env, never by template"
            if "uses" in s:
                assert re.match(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$", s["uses"]), s["uses"]
            if str(s.get("uses", "")).startswith("actions/download-artifact@"):
                assert s["uses"] == DOWNLOAD
            if str(s.get("uses", "")).startswith("actions/checkout@"):
                assert s["with"]["persist-credentials"] is False
            if '"$SHA"' in s.get("run", "") and not uses_sha:
                assert s["run"].lstrip().startswith(SHA_CHECK), f"{job_name}: the SHA is checked before use"
                uses_sha = True


def test_train_workflow_trains_on_orbit_gpu_and_reports_even_a_failure() -> None:
    workflow = load("train.yml")
    jobs = workflow["jobs"]
    assert jobs["train"]["runs-on"] == ["self-hosted", "orbit-gpu"]
    assert jobs["pull"]["runs-on"] == jobs["push"]["runs-on"] == ["self-hosted", "orbit-data"]
    assert (jobs["train"]["needs"], jobs["push"]["needs"]) == ("pull", "train")
    job = jobs["train"]
    checkout = steps(job)[0]
    assert checkout["with"]["ref"] == "refs/pull/${{ inputs.pr }}/head"
    commands_run = [" ".join(words) for s in steps(job) for words in commands(str(s.get("run", "")))]
    assert [c for c in commands_run if c.startswith(("dvc", "orbit"))] == [
        "dvc config --local cache.dir $RUNNER_TEMP/orbit-data/cache",
        "dvc remote add --local --force orbit-shared $ORBIT_CACHE/dvc",
        "dvc fetch --remote orbit-shared",
        "dvc checkout --allow-missing",
        "dvc repro 2>&1",
        "dvc exp run --name $EXPERIMENT ${args[@]} 2>&1",
        "orbit report build --base $BASE --out $RUNNER_TEMP/orbit-report "
        "--repro-log $RUNNER_TEMP/repro.log --started $STARTED",
    ]
    train = step(workflow, "train", "Train")
    assert train["shell"] == "bash", "pipefail, so that a failed stage fails the step despite tee"
    assert train["run"].splitlines()[0] == 'source "$RUNNER_TEMP/pr-venv/bin/activate"'
    report, upload_report = steps(job)[-2:]
    assert "failure" in report["if"], "a failed stage still gets its report"
    assert upload_report["with"]["name"] == "orbit-report"
    assert upload_report["with"]["path"] == "${{ runner.temp }}/orbit-report"


def needed(jobs: dict[str, Job], job: str) -> set[str]:
    """Return the jobs a job needs, directly or not."""
    needs = jobs[job].get("needs", [])
    direct = {needs} if isinstance(needs, str) else set(needs)
    return direct.union(*(needed(jobs, other) for other in direct))


def test_each_artifact_a_job_takes_was_handed_on_by_a_job_it_needs() -> None:
    for name in ORBIT:
        jobs = load(name)["jobs"]
        for job, body in jobs.items():
            for artifact in downloads(body):
                assert any(artifact in uploads(jobs[other]) for other in needed(jobs, job)), (
                    name,
                    job,
                    artifact,
                )


# --- the runner image: tooling that root owns, and a throwaway venv for the PR ----------------------


def dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "deploy/images/runner-gpu.Containerfile").read_text()
    lines = [
        line
        for line in text.replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return [(line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1]) for line in lines]


def test_the_runner_images_tooling_venv_is_roots_and_not_writable_by_the_runner_user() -> None:
    user, made_by, installed_by, path = "root", None, None, False
    for instruction, argument in dockerfile():
        if instruction == "USER":
            user = argument.strip()
        if instruction in ("COPY", "ADD"):
            assert "--chown" not in argument and "--chmod" not in argument, "the sources stay root's"
        if instruction == "RUN":
            assert not re.search(r"\bchown\b", argument), "nothing is handed to the runner user"
            modes = re.findall(r"\bchmod\s[^&;|]*", argument)
            assert [mode.strip() for mode in modes] in ([], ["chmod -R go-w /opt/orbit"]), modes
            if re.search(r"-m venv /opt/orbit\b", argument):
                made_by = user
            if "/opt/orbit/bin/pip install" in argument:
                installed_by = user
                assert modes, "group and others lose write access to all of it"
        if instruction == "ENV":
            path = path or "PATH=/opt/orbit/bin:$PATH" in argument
    assert made_by in ("0", "root") and installed_by in ("0", "root"), "root makes and fills the venv"
    assert user == "1001", "the steps run as 1001, who does not own the tooling"
    assert path, "the tooling is what `python`, `dvc` and `orbit` mean in every step"


PLANT_BACKEND = '''"""A build backend whose wheel ships a .pth: the interpreter that installs it runs it."""
import base64, hashlib, os, zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = os.path.abspath(os.path.join(HERE, os.pardir, "PAYLOAD-RAN"))
INFO = "planted-0.dist-info"
FILES = {
    "planted.pth": "import pathlib; pathlib.Path(%r).write_text('the PR ran here')\\n" % MARKER,
    INFO + "/METADATA": "Metadata-Version: 2.1\\nName: planted\\nVersion: 0\\n",
    INFO + "/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "planted-0-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, text in FILES.items():
            wheel.writestr(path, text)
            digest = hashlib.sha256(text.encode()).digest()
            encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            record.append(f"{path},sha256={encoded},{len(text.encode())}")
        record.append(INFO + "/RECORD,,")
        wheel.writestr(INFO + "/RECORD", "\\n".join(record) + "\\n")
    return name


build_editable = build_wheel
'''
PLANT_PROJECT = """[build-system]
requires = []
build-backend = "plant"
backend-path = ["."]

[project]
name = "planted"
version = "0"
"""


def bash(script: str, cwd: Path, env: dict[str, str], shell: str = "") -> subprocess.CompletedProcess[str]:
    """Run a step's script as the runner does: `bash -e`, with pipefail when the step says `shell: bash`."""
    options = ["-eo", "pipefail"] if shell == "bash" else ["-e"]
    return subprocess.run(
        ["bash", "--noprofile", "--norc", *options, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def run_step(
    workflow: Workflow, job: str, name: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    found = step(workflow, job, name)
    result = bash(
        found["run"],
        cwd,
        {**env, **{k: v for k, v in (found.get("env") or {}).items() if "${{" not in v}},
        found.get("shell", ""),
    )
    return result


@pytest.mark.slow
def test_a_pth_file_the_pr_plants_runs_in_its_throwaway_venv_never_in_the_tooling(tmp_path: Path) -> None:
    tooling, project, temp = tmp_path / "tooling", tmp_path / "pr", tmp_path / "runner-temp"
    subprocess.run([sys.executable, "-m", "venv", str(tooling)], check=True)
    purelib = subprocess.run(
        [str(tooling / "bin/python"), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "tooling_only.py").write_text("WHERE = 'the tooling'\n")
    project.mkdir()
    temp.mkdir()
    (project / "plant.py").write_text(PLANT_BACKEND)
    (project / "pyproject.toml").write_text(PLANT_PROJECT)
    marker = tmp_path / "PAYLOAD-RAN"
    env = {
        "PATH": f"{tooling / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(temp),
        "HOME": str(tmp_path),
        "PIP_NO_INDEX": "1",  # the planted project needs nothing from an index
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    workflow = load("train.yml")
    for name in ("Make a throwaway venv for the PR's code", "Install the project into it"):
        result = run_step(workflow, "train", name, project, env)
        assert result.returncode == 0, result.stdout + result.stderr

    subprocess.run([str(tooling / "bin/python"), "-c", "pass"], env=env, check=True)
    assert not marker.exists(), "the tooling's interpreter ran the PR's .pth"

    pr_python = temp / "pr-venv/bin/python"
    seen = subprocess.run(
        [str(pr_python), "-c", "import tooling_only; print(tooling_only.WHERE)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert seen.stdout.strip() == "the tooling", "the PR's venv sees the tooling's packages (torch, dvc)"
    assert marker.read_text() == "the PR ran here", "the planted .pth is real: it ran in the PR's venv"
    marker.unlink()

    # Today's train.yml installed the PR into the tooling's venv: there, the payload runs in every tool.
    todays = bash("python -m pip install --no-deps --editable .", project, env)
    assert todays.returncode == 0, todays.stdout + todays.stderr
    subprocess.run([str(tooling / "bin/python"), "-c", "pass"], env=env, check=True)
    assert marker.exists(), "the attack works on today's workflow, so the test above means something"


# --- DVC, end to end: the push and pull jobs' own scripts, against planted attacks -----------------


def objects(store: Path) -> dict[str, bytes]:
    """Return the objects of a DVC cache or local remote, by the name they are stored under."""
    found = {}
    for path in (store / "files/md5").rglob("*"):
        if path.is_file():
            found[path.parent.name + path.name.removesuffix(".dir")] = path.read_bytes()
    return found


def content_addressed(store: Path) -> dict[str, bytes]:
    found = objects(store)
    wrong = [name for name, data in found.items() if hashlib.md5(data).hexdigest() != name]
    assert not wrong, f"objects not named by the hash of their content: {wrong}"
    return found


def locked_outs(lock: Path) -> dict[str, str]:
    stages = yaml.safe_load(lock.read_text())["stages"]
    return {
        out["path"]: out["md5"].removesuffix(".dir")
        for stage in stages.values()
        for out in stage.get("outs", [])
    }


def outputs_as_uploaded(project: Path, destination: Path) -> Path:
    """Copy the workspace as upload-artifact does by default: without hidden files."""
    shutil.copytree(project, destination, ignore=lambda _, names: [n for n in names if n.startswith(".")])
    return destination


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A runner's workspace: the default branch's DVC config (a local remote) checked out in trusted/."""
    work, temp = tmp_path / "work", tmp_path / "runner-temp"
    (work / "trusted/.dvc").mkdir(parents=True)
    temp.mkdir()
    remote = tmp_path / "remote"
    (work / "trusted/.dvc/config").write_text(
        f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = {remote}\n"
    )
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "RUNNER_TEMP": str(temp),
        "GITHUB_WORKSPACE": str(work),
        "DVC_NO_ANALYTICS": "1",
    }
    return work, env


@pytest.mark.slow
def test_the_push_job_pushes_only_what_it_hashed_and_the_pull_job_ignores_the_prs_dvc_config(
    trained_project: Path, tmp_path: Path, workspace: tuple[Path, dict[str, str]]
) -> None:
    work, env = workspace
    temp, remote = Path(env["RUNNER_TEMP"]), tmp_path / "remote"
    honest = locked_outs(trained_project / "dvc.lock")
    model = honest["model/classifier.bentomodel"]
    true_model = (trained_project / "model/classifier.bentomodel").read_bytes()
    workflow = load("train.yml")

    # The PR's job hands on its workspace, with a cache of its own making and a lock that lies.
    outputs = outputs_as_uploaded(trained_project, temp / "orbit-outputs")
    poisoned = outputs / ".dvc/cache/files/md5" / model[:2] / model[2:]
    poisoned.parent.mkdir(parents=True)
    poisoned.write_bytes(b"a poisoned model, filed under the honest model's hash")
    lock = outputs / "dvc.lock"
    lock.write_text(lock.read_text().replace(model, "deadbeef" * 4))
    for name in ("Hash the outputs here", "Push outputs"):
        result = run_step(workflow, "push", name, work, env)
        assert result.returncode == 0, result.stdout + result.stderr
        if name.startswith("Hash"):
            assert "::warning::the outputs do not hash to what the PR's dvc.lock says" in result.stdout
    pushed = content_addressed(remote)
    assert pushed[model] == true_model, "the honest hash holds the honest model"
    assert "deadbeef" * 4 not in pushed
    assert locked_outs(outputs / "dvc.lock") == honest, "the hashes computed here are the run's true ones"

    # The next PR names its own remote (config and config.local), full of poison under honest names.
    attacker = tmp_path / "attacker-remote"
    shutil.copytree(remote, attacker)
    for path in (attacker / "files/md5").rglob("*"):
        if path.is_file():
            path.write_bytes(b"poison")
    pr = work / "pr"
    subprocess.run(["git", "clone", "-q", str(trained_project), str(pr)], check=True)
    sha = subprocess.run(
        ["git", "-C", str(pr), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    shutil.copy(trained_project / "dvc.lock", pr / "dvc.lock")  # as if committed
    (pr / ".dvc/config").write_text(f"[core]\n    remote = evil\n['remote \"evil\"']\n    url = {attacker}\n")
    (pr / ".dvc/config.local").write_text(f"['remote \"storage\"']\n    url = {attacker}\n")
    for name in ("Check out the exact commit", "Use the default branch's DVC config", "Pull data"):
        result = run_step(workflow, "pull", name, work, {**env, "SHA": sha})
        assert result.returncode == 0, result.stdout + result.stderr
    pulled = content_addressed(temp / "orbit-data/cache")
    assert pulled[model] == true_model, "pulled from the default branch's remote, never the PR's"
    assert (temp / "orbit-data/commit").read_text().strip() == sha

    # The training job checks the pulled data out of that cache, with no remote at all.
    fresh = tmp_path / "train-work"
    subprocess.run(["git", "clone", "-q", str(trained_project), str(fresh)], check=True)
    shutil.copy(trained_project / "dvc.lock", fresh / "dvc.lock")
    result = run_step(workflow, "train", "Check out the pulled data", fresh, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (fresh / "model/classifier.bentomodel").read_bytes() == true_model


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["a symbolic link", "an output outside the project"])
def test_the_push_job_refuses_outputs_that_reach_outside_them(
    attack: str, trained_project: Path, tmp_path: Path, workspace: tuple[Path, dict[str, str]]
) -> None:
    work, env = workspace
    outputs = outputs_as_uploaded(trained_project, Path(env["RUNNER_TEMP"]) / "orbit-outputs")
    secret = tmp_path / "runner-secret"
    secret.write_text("AWS_SECRET_ACCESS_KEY=hunter2")
    if attack == "a symbolic link":
        (outputs / "data/raw/link.png").symlink_to(secret)
    else:
        (outputs / "steal.dvc").write_text(f"outs:\n- path: {secret}\n  hash: md5\n")
    result = run_step(load("train.yml"), "push", "Hash the outputs here", work, env)
    assert result.returncode != 0, "the outputs were hashed anyway"
    said = result.stdout + result.stderr
    assert ("outputs hold a symbolic link" if attack == "a symbolic link" else "external output") in said
    cache = Path(env["RUNNER_TEMP"]) / "dvc-cache"
    assert all(b"hunter2" not in data for data in (objects(cache) if cache.exists() else {}).values())


def test_the_serving_base_is_built_on_github_s_runners_from_the_default_branch_named_as_deploys_name_it(
    tmp_path: Path,
) -> None:
    from deploy.manifests import SERVICE
    from deploy.serving_base import CONTAINERFILE, LOCK, base_image

    workflow = load("serving-base.yml")
    triggers = workflow[True]
    assert (
        set(triggers["push"]["paths"]) >= {str(LOCK), str(CONTAINERFILE)} and "workflow_dispatch" in triggers
    )
    assert workflow["permissions"] == {}
    [job] = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest", "Docker on GitHub's runners: never a build in the cluster"
    assert (
        job["if"] == "${{ github.ref == format('refs/heads/{0}', github.event.repository.default_branch) }}"
    )
    assert job["permissions"] == READ and environment_name(job) == "serving-base"
    assert job["env"]["SERVICE"] == SERVICE
    for s in steps(job):
        assert "${{" not in s.get("run", ""), "values reach scripts through env"
        if "uses" in s:
            assert re.match(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$", s["uses"]), s["uses"]
            assert s["with"]["persist-credentials"] is False
    naming = step(workflow, "base", "Name the base")
    output = tmp_path / "output"
    env = {"PATH": os.environ["PATH"], "REGISTRY": "registry.example.com/octo/", "SERVICE": SERVICE}
    subprocess.run(
        ["bash", "-e", "-c", naming["run"]], cwd=ROOT, env={**env, "GITHUB_OUTPUT": str(output)}, check=True
    )
    expected = base_image("registry.example.com/octo", SERVICE, ROOT / LOCK, ROOT / CONTAINERFILE)
    assert output.read_text() == f"image={expected}\n", "the base deploy.yml appends to is the one built"
    assert re.fullmatch(r"registry\.example\.com/octo/[a-z-]+-base:[0-9a-f]{16}", expected)


# --- the release: images pushed with provenance and an SBOM, signed by digest ----------------------


def test_the_release_builds_each_image_with_provenance_and_an_sbom_and_signs_its_digest() -> None:
    workflow = load("release.yml")
    assert workflow[True] == {"push": {"tags": ["v*"]}} and workflow["permissions"] == {}
    assert set(workflow["jobs"]) == {"image", "build-runner"}
    images = workflow["jobs"]["image"]["strategy"]["matrix"]["image"]
    assert set(images) == {"bot", "runner-cpu", "runner-gpu"}
    assert workflow["jobs"]["build-runner"]["needs"] == "image", "built on this release's CPU runner"
    for name, job in workflow["jobs"].items():
        assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}, name
        for s in steps(job):
            assert "${{" not in s.get("run", ""), "values reach scripts through env, never by template"
            if "uses" in s:
                assert re.match(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$", s["uses"]), s["uses"]
        [build] = [s for s in steps(job) if s.get("uses", "").startswith("docker/build-push-action@")]
        built = build["with"]
        assert (built["push"], built["provenance"], built["sbom"]) == (True, "mode=max", True), name
        sign = step(workflow, name, "Sign")
        assert sign["env"]["IMAGE"].endswith("@${{ steps.build.outputs.digest }}"), "a digest, never a tag"
        assert 'cosign sign --yes "$IMAGE"' in sign["run"]
        order = [i for i, s in enumerate(steps(job)) if "cosign-installer" in s.get("uses", "") or s is sign]
        assert order == sorted(order) and len(order) == 2, name
    files = {
        build["with"]["file"]
        for job in workflow["jobs"].values()
        for build in steps(job)
        if "file" in build.get("with", {})
    }
    assert files == {
        "deploy/images/${{ matrix.image }}.Containerfile",
        "deploy/images/runner-build.Containerfile",
    }
    assert all(
        (ROOT / f"deploy/images/{image}.Containerfile").exists() for image in [*images, "runner-build"]
    )
    name = step(workflow, "image", "Name the image")["run"]
    assert 'repository=ghcr.io/${OWNER,,}/$IMAGE"' in name, "the names the manifests and settings use"


def test_the_report_is_built_and_uploaded_also_after_a_failed_stage() -> None:
    workflow = load("train.yml")
    for name in ("Build the report", "Upload the report bundle"):
        condition = step(workflow, "train", name)["if"]
        # Without a status function GitHub adds success(): the step would never run after a failure.
        assert "!cancelled()" in condition, name
        assert "steps.train.outcome == 'failure'" in condition, name


# --- a sweep point: `dvc exp run` with the settings, each checked again as data ----------------------


def _train_step(
    tmp_path: Path, experiment: str, settings: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run train.yml's Train step with a `dvc` and a `git` that only record their arguments."""
    tools, temp, work = tmp_path / "bin", tmp_path / "temp", tmp_path / "work"
    for folder in (tools, temp / "pr-venv/bin", work):
        folder.mkdir(parents=True, exist_ok=True)
    (temp / "pr-venv/bin/activate").write_text("")
    calls = tmp_path / "calls"
    for name in ("dvc", "git"):
        record = f'printf "{name}" >> "{calls}"\nprintf " [%s]" "$@" >> "{calls}"\necho >> "{calls}"\n'
        (tools / name).write_text(f"#!/bin/bash\n{record}")
        (tools / name).chmod(0o755)
    env = {
        "PATH": f"{tools}{os.pathsep}/usr/bin:/bin",
        "RUNNER_TEMP": str(temp),
        "EXPERIMENT": experiment,
        "SETTINGS": settings,
    }
    found = step(load("train.yml"), "train", "Train")
    assert found["env"] == {"EXPERIMENT": "${{ inputs.experiment }}", "SETTINGS": "${{ inputs.set }}"}
    result = bash(found["run"], work, env, found.get("shell", ""))
    return result, calls.read_text() if calls.exists() else ""


def test_the_train_step_runs_a_sweep_point_as_an_experiment_with_its_settings(tmp_path: Path) -> None:
    result, calls = _train_step(tmp_path, "sweep-1001-3", "train.lr=0.01 train.epochs=20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls.splitlines()[-1] == (
        "dvc [exp] [run] [--name] [sweep-1001-3] [-S] [train.lr=0.01] [-S] [train.epochs=20]"
    )
    plain, plain_calls = _train_step(tmp_path / "plain", "", "")
    assert plain.returncode == 0, plain.stderr
    assert plain_calls == "dvc [repro]\n", "without an experiment: the PR's own training, as before"


@pytest.mark.parametrize(
    ("experiment", "settings"),
    [
        ("sweep-1-0", "train.lr=$(touch${IFS}PWNED)"),
        ("sweep-1-0", "train.lr=*"),
        ("sweep-1-0", "--force"),
        ("sweep-1-0", "train.lr=1;touch PWNED"),
        ("sweep-1-0", ""),
        ("-rf", "train.lr=0.1"),
        ("a b", "train.lr=0.1"),
    ],
)
def test_the_train_step_refuses_settings_that_are_not_plain_key_values(
    tmp_path: Path, experiment: str, settings: str
) -> None:
    result, calls = _train_step(tmp_path, experiment, settings)
    assert result.returncode == 1
    assert "dvc" not in calls, "nothing ran"
    assert not list(tmp_path.rglob("PWNED"))


# --- the PR's own dependencies, and the shared cache (ORBIT_CACHE) ----------------------------------

IMAGE_LOCK_HASH = "/opt/orbit/runner.lock.sha256"


def wheel(folder: Path, name: str, version: str = "1.0") -> Path:
    """Write a pure-Python wheel whose module says its name, and return it."""
    import base64
    import zipfile

    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"WHO = {name!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        record = []
        for member, text in files.items():
            archive.writestr(member, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{member},sha256={digest},{len(text.encode())}")
        archive.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return path


def lock_of(*wheels: Path) -> str:
    """Return a requirements/runner.lock as scripts/lock writes it: pinned, one hash per file."""
    lines = ["# This file was autogenerated by uv via the following command:", "#    scripts/lock"]
    for path in wheels:
        name, version = path.name.split("-")[:2]
        lines += [
            f"{name}=={version} \\",
            f"    --hash=sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}",
        ]
    return "\n".join(lines) + "\n"


def offline_env(tmp_path: Path, tooling: Path, cache: Path | None = None) -> dict[str, str]:
    env = {
        "PATH": f"{tooling / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path / "runner-temp"),
        "HOME": str(tmp_path),
        "PIP_NO_INDEX": "1",  # nothing from an index: the wheels come from the shared cache or nowhere
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    (tmp_path / "runner-temp").mkdir(exist_ok=True)
    return {**env, "ORBIT_CACHE": str(cache)} if cache else env


def with_image_lock(workflow: Workflow, job: str, name: str, hash_file: Path) -> Workflow:
    """Return the workflow with one step reading the image's lock hash from `hash_file` instead."""
    found = step(workflow, job, name)
    found["run"] = found["run"].replace(IMAGE_LOCK_HASH, str(hash_file))
    return workflow


def pr_project(folder: Path, lock: str) -> Path:
    folder.mkdir()
    (folder / "plant.py").write_text(PLANT_BACKEND)
    (folder / "pyproject.toml").write_text(PLANT_PROJECT)
    (folder / "requirements").mkdir()
    (folder / "requirements/runner.lock").write_text(lock)
    return folder


INSTALL_STEPS = ("Make a throwaway venv for the PR's code", "Install the project into it")


def install(workflow: Workflow, project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name in INSTALL_STEPS:
        result = run_step(workflow, "train", name, project, env)
        if result.returncode != 0:
            return result
    return result


def pr_python(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    python = Path(env["RUNNER_TEMP"]) / "pr-venv/bin/python"
    return subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_a_pr_that_adds_a_dependency_gets_its_locks_packages_from_the_shared_cache(tmp_path: Path) -> None:
    tooling = tmp_path / "tooling"
    subprocess.run([sys.executable, "-m", "venv", str(tooling)], check=True)
    added = wheel(tmp_path / "built", "newdep")
    lock = lock_of(added)
    cache = tmp_path / "cache"
    wheels = cache / "wheels" / hashlib.sha256(lock.encode()).hexdigest()
    wheels.mkdir(parents=True)
    shutil.copy(added, wheels)  # as the pull job fetched it
    image_hash = tmp_path / "image-lock.sha256"
    image_hash.write_text(hashlib.sha256(b"the image's own lock").hexdigest() + "\n")
    workflow = with_image_lock(load("train.yml"), "train", INSTALL_STEPS[0], image_hash)
    project = pr_project(tmp_path / "pr", lock)
    env = offline_env(tmp_path, tooling, cache)

    result = install(workflow, project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = pr_python(
        env, "import importlib.metadata, newdep; print(newdep.WHO, importlib.metadata.version('planted'))"
    )
    assert seen.stdout.strip() == "newdep 0", "the lock's packages and the project itself: " + seen.stderr
    pth = list((Path(env["RUNNER_TEMP"]) / "pr-venv").rglob("orbit-tooling.pth"))
    assert pth == [], "an environment of its own: the tooling's packages are not mixed in"


@pytest.mark.slow
def test_a_wheel_that_does_not_match_the_lock_is_refused(tmp_path: Path) -> None:
    tooling = tmp_path / "tooling"
    subprocess.run([sys.executable, "-m", "venv", str(tooling)], check=True)
    lock = lock_of(wheel(tmp_path / "built", "newdep"))
    cache = tmp_path / "cache"
    wheels = cache / "wheels" / hashlib.sha256(lock.encode()).hexdigest()
    wheel(tmp_path / "poisoned", "newdep").write_bytes(b"")  # a name the lock pins, other bytes
    shutil.copytree(tmp_path / "poisoned", wheels)
    project = pr_project(tmp_path / "pr", lock)
    result = install(load("train.yml"), project, offline_env(tmp_path, tooling, cache))
    assert result.returncode != 0
    assert "hash" in (result.stdout + result.stderr).lower()


@pytest.mark.slow
def test_a_lock_like_the_images_keeps_the_tooling_and_installs_nothing_more(tmp_path: Path) -> None:
    tooling = tmp_path / "tooling"
    subprocess.run([sys.executable, "-m", "venv", str(tooling)], check=True)
    lock = lock_of(wheel(tmp_path / "built", "newdep"))  # in no wheel folder: installing it would fail
    image_hash = tmp_path / "image-lock.sha256"
    image_hash.write_text(hashlib.sha256(lock.encode()).hexdigest() + "\n")
    workflow = with_image_lock(load("train.yml"), "train", INSTALL_STEPS[0], image_hash)
    project = pr_project(tmp_path / "pr", lock)
    env = offline_env(tmp_path, tooling)
    result = install(workflow, project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert pr_python(env, "import newdep").returncode != 0, "the lock was not installed"
    assert list((Path(env["RUNNER_TEMP"]) / "pr-venv").rglob("orbit-tooling.pth")), "the tooling is seen"


FETCH_WHEELS = "Fetch the wheels of the PR's lock"


def test_the_pull_job_fetches_wheels_only_hash_checked_with_the_tooling() -> None:
    script = step(load("train.yml"), "pull", FETCH_WHEELS)["run"]
    downloads_ = [words for words in commands(script) if "download" in words and "pip" in words]
    assert downloads_, "it fetches with pip download"
    for words in downloads_:
        assert words[:4] == ["python", "-I", "-m", "pip"], "the tooling's pip, never the PR's"
        assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(words), words
    assert not [words for words in commands(script) if "install" in words], "nothing installed here"


@pytest.mark.parametrize(
    "line",
    ["-r /proc/self/environ", "--index-url https://evil.example/simple", "newdep>=1.0", "-e git+https://x/y"],
)
def test_a_lock_with_anything_but_pinned_hashed_requirements_fetches_nothing(
    line: str, tmp_path: Path
) -> None:
    work, cache = tmp_path / "work", tmp_path / "cache"
    (work / "pr/requirements").mkdir(parents=True)
    lock = lock_of(wheel(tmp_path / "built", "newdep"))
    (work / "pr/requirements/runner.lock").write_text(lock + line + "\n")
    env = offline_env(tmp_path, Path(sys.executable).parent.parent, cache)
    result = run_step(load("train.yml"), "pull", FETCH_WHEELS, work, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "holds more than pinned, hashed requirements: no wheels fetched" in result.stdout
    assert not (cache / "wheels").exists()


@pytest.mark.slow
def test_the_pull_job_fetches_the_locks_wheels_into_the_shared_cache(tmp_path: Path) -> None:
    work, cache = tmp_path / "work", tmp_path / "cache"
    (work / "pr/requirements").mkdir(parents=True)
    added = wheel(tmp_path / "index", "newdep")
    lock = lock_of(added)
    (work / "pr/requirements/runner.lock").write_text(lock)
    env = {**offline_env(tmp_path, BIN.parent, cache), "PIP_FIND_LINKS": str(tmp_path / "index")}
    result = run_step(load("train.yml"), "pull", FETCH_WHEELS, work, env)
    assert result.returncode == 0, result.stdout + result.stderr
    fetched = cache / "wheels" / hashlib.sha256(lock.encode()).hexdigest()
    assert sorted(p.name for p in fetched.iterdir()) == ["complete", added.name]
    assert (fetched / added.name).read_bytes() == added.read_bytes()


def test_no_job_uses_the_run_cache_and_only_jobs_that_run_no_pr_code_may_write_the_shared_cache() -> None:
    for name in ORBIT:
        workflow = load(name)
        for job_name, job in workflow["jobs"].items():
            assert "--run-cache" not in json.dumps(job), (
                f"{name} {job_name}: see SECURITY.md, the shared cache"
            )
            if "orbit-data" in job["runs-on"]:
                assert job_name not in runs_pr_code(workflow), f"{name} {job_name} writes the shared cache"
    push = step(load("train.yml"), "push", "Add what was hashed here")
    assert "env" not in push, "no key"
    assert [w for w in commands(push["run"]) if w[:1] == ["dvc"]] == [
        ["dvc", "remote", "add", "--local", "--force", "orbit-shared", "$ORBIT_CACHE/dvc"],
        ["dvc", "push", "--remote", "orbit-shared"],
    ], "objects only, those this job hashed"


def test_the_pull_job_refuses_imports_fetches_into_its_own_cache_and_shares_only_checked_objects() -> None:
    workflow = load("train.yml")
    pull = workflow["jobs"]["pull"]
    run = [" ".join(words) for s in steps(pull) for words in commands(str(s.get("run", "")))]
    assert not [c for c in run if "cache.dir" in c and "ORBIT_CACHE" in c], (
        "dvc fetch files what it gets under the claimed hash, unchecked: never into the shared cache"
    )
    sequence = [
        "python -I -m runner.cache_verify imports pr",
        "dvc fetch --remote orbit-shared",
        "dvc fetch",
        "python -I -m runner.cache_verify share $RUNNER_TEMP/orbit-data/cache $ORBIT_CACHE/dvc",
    ]
    assert [run.index(c) for c in sequence] == sorted(run.index(c) for c in sequence)
    assert [c for c in run if c.startswith("dvc fetch")] == sequence[1:3], "each fetch after the check"
    shares = step(workflow, "pull", "Add what was fetched to the shared cache")
    assert "env" not in shares, "no key"
