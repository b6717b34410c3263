"""Hand-written fakes that record calls, and helpers to build signed deliveries."""

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from bot.delivery import Delivery, signature_of
from bot.errors import TemporaryError
from bot.events import Repo
from bot.github import (
    ArtifactInfo,
    CheckUpdate,
    CommentInfo,
    GitHubApi,
    JobInfo,
    PullInfo,
    Reaction,
    RunInfo,
    RunStatus,
    TreeEntry,
)
from bot.github.actions import MAX_ARTIFACT_BYTES, ArtifactTooLarge
from bot.github.checks import CheckRunInfo
from bot.github.deployments import DeploymentInfo, DeploymentState
from bot.github.issues import ReactionInfo
from bot.inbox import Inbox, make_engine

DEFAULT_HEAD = "d" * 40  # the default branch's commit: what a dispatched run runs
SECRET = b"it's a secret to everybody"


@dataclass
class FakeGitHub:
    """Records every call; permissions per user; can fail the next calls."""

    permissions: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    login: str = "orbit[bot]"
    dispatched: dict[int, RunInfo] = field(default_factory=dict)  # runs dispatch_workflow started

    def _record(self, name: str, *args: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.calls.append((name, args))

    async def own_login(self) -> str:
        return self.login

    async def collaborator_permission(self, repo: Repo, username: str) -> str:
        self._record("permission", repo.full_name, username)
        return self.permissions.get(username, "read")

    async def add_reaction(self, repo: Repo, comment_id: int, content: Reaction) -> None:
        self._record("reaction", repo.full_name, comment_id, content)

    others_reactions: dict[int, list[ReactionInfo]] = field(default_factory=dict)  # by people, per comment

    async def comment_reactions(self, repo: Repo, comment_id: int) -> list[ReactionInfo]:
        self._record("list_reactions", repo.full_name, comment_id)
        own = [ReactionInfo(args[2], self.login) for args in self.named("reaction") if args[1] == comment_id]
        return [*self.others_reactions.get(comment_id, []), *own]

    async def create_comment(self, repo: Repo, number: int, body: str) -> int:
        self._record("comment", repo.full_name, number, body)
        self.comments[len(self.calls)] = CommentInfo(len(self.calls), body, self.login)
        return len(self.calls)

    async def changed_files(self, repo: Repo, number: int) -> list[str]:
        self._record("files", repo.full_name, number)
        return self.files

    pulls: dict[int, PullInfo] = field(default_factory=dict)
    texts: dict[tuple[str, str], str] = field(default_factory=dict)
    compared: list[str] = field(default_factory=list)
    check_run_status: dict[int, str] = field(default_factory=dict)
    check_run_sha: dict[int, str] = field(default_factory=dict)
    check_details: dict[str, list[CheckRunInfo]] = field(default_factory=dict)  # by commit
    runs: list[RunInfo] = field(default_factory=list)
    jobs: dict[int, JobInfo] = field(default_factory=dict)
    runners: dict[str, int] = field(default_factory=dict)

    async def pull_request(self, repo: Repo, number: int) -> PullInfo:
        self._record("get_pull", repo.full_name, number)
        return self.pulls[number]

    async def compare_files(self, repo: Repo, base: str, head: str) -> list[str]:
        self._record("compare", repo.full_name, base, head)
        return self.compared

    async def file_text(self, repo: Repo, path: str, ref: str) -> str | None:
        self._record("file", repo.full_name, path, ref)
        return self.texts.get((path, ref))

    async def create_check_run(self, repo: Repo, head_sha: str, name: str, title: str, summary: str) -> int:
        self._record("create_check", repo.full_name, head_sha, name, title)
        check_id = 500 + len(self.check_run_status)
        self.check_run_status[check_id] = "queued"
        self.check_run_sha[check_id] = head_sha
        return check_id

    async def update_check_run(self, repo: Repo, check_run_id: int, update: CheckUpdate) -> None:
        self._record("update_check", repo.full_name, check_run_id, update)
        if update.conclusion:
            self.check_run_status[check_run_id] = "completed"
        elif update.status:
            self.check_run_status[check_run_id] = update.status

    async def check_run_details(self, repo: Repo, ref: str, name: str) -> list[CheckRunInfo]:
        return [check for check in self.check_details.get(ref, []) if check.name == name]

    async def merge_commit(self, repo: Repo, number: int) -> str | None:
        return None

    async def check_runs(self, repo: Repo, ref: str, name: str) -> list[tuple[int, str]]:
        self._record("list_checks", repo.full_name, ref)
        return [(i, self.check_run_status[i]) for i, sha in self.check_run_sha.items() if sha == ref]

    async def dispatch_workflow(self, repo: Repo, workflow: str, ref: str, inputs: dict[str, str]) -> int:
        self._record("dispatch", repo.full_name, workflow, ref, inputs)
        run_id = 5000 + len(self.dispatched)
        self.dispatched[run_id] = RunInfo(
            run_id,
            "queued",
            f"{workflow} {inputs}",
            DEFAULT_HEAD,
            f".github/workflows/{workflow}",
            "workflow_dispatch",
            repo.full_name,
        )
        return run_id

    async def workflow_run(self, repo: Repo, run_id: int) -> RunInfo:
        self._record("get_run", repo.full_name, run_id)
        return self.dispatched[run_id]

    async def workflow_runs(self, repo: Repo, workflow: str, status: RunStatus) -> list[RunInfo]:
        self._record("list_runs", repo.full_name, workflow, status)
        return [run for run in self.runs if run.status == status]

    async def cancel_run(self, repo: Repo, run_id: int) -> None:
        self._record("cancel", repo.full_name, run_id)

    async def workflow_job(self, repo: Repo, job_id: int) -> JobInfo | None:
        self._record("get_job", repo.full_name, job_id)
        return self.jobs.get(job_id)

    async def run_jobs(self, repo: Repo, run_id: int) -> list[JobInfo]:
        self._record("list_jobs", repo.full_name, run_id)
        return [job for job in self.jobs.values() if job.run_id == run_id]

    async def generate_jit_config(
        self, repo: Repo, name: str, labels: list[str], runner_group_id: int | None
    ) -> tuple[int, str]:
        self._record("jit", repo.full_name, name, tuple(labels), runner_group_id)
        self.runners[name] = 9000 + len(self.runners)
        return self.runners[name], f"JITCONFIG-SECRET-{name}"

    async def find_runner(self, repo: Repo, name: str, in_organization: bool = False) -> int | None:
        self._record("find_runner", repo.full_name, name, *(("organization",) if in_organization else ()))
        return self.runners.get(name)

    async def delete_runner(self, repo: Repo, runner_id: int, in_organization: bool = False) -> None:
        self._record(
            "delete_runner", repo.full_name, runner_id, *(("organization",) if in_organization else ())
        )
        self.runners = {name: rid for name, rid in self.runners.items() if rid != runner_id}

    artifacts: dict[int, list[tuple[ArtifactInfo, bytes]]] = field(default_factory=dict)
    logs: dict[int, str] = field(default_factory=dict)
    comments: dict[int, CommentInfo] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    trees: dict[str, list[TreeEntry]] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)  # commit -> tree

    async def run_artifacts(self, repo: Repo, run_id: int) -> list[ArtifactInfo]:
        self._record("list_artifacts", repo.full_name, run_id)
        return [info for info, _ in self.artifacts.get(run_id, [])]

    async def download_artifact(
        self, repo: Repo, artifact_id: int, max_bytes: int = MAX_ARTIFACT_BYTES
    ) -> bytes:
        self._record("download_artifact", repo.full_name, artifact_id)
        data = next(
            data for entries in self.artifacts.values() for info, data in entries if info.id == artifact_id
        )
        if len(data) > max_bytes:  # as the real client: cut off at the limit, whatever the listed size
            raise ArtifactTooLarge(artifact_id, None, max_bytes)
        return data

    async def job_log(self, repo: Repo, job_id: int) -> str:
        self._record("job_log", repo.full_name, job_id)
        return self.logs[job_id]

    async def issue_comments(self, repo: Repo, number: int) -> list[CommentInfo]:
        self._record("list_comments", repo.full_name, number)
        return list(self.comments.values())

    async def update_comment(self, repo: Repo, comment_id: int, body: str) -> None:
        self._record("update_comment", repo.full_name, comment_id, body)
        self.comments[comment_id] = CommentInfo(comment_id, body, self.login)

    async def branch_head(self, repo: Repo, branch: str) -> str | None:
        self._record("branch_head", repo.full_name, branch)
        return self.branches.get(branch)

    async def commit_tree(self, repo: Repo, commit_sha: str) -> str:
        self._record("commit_tree", repo.full_name, commit_sha)
        return self.commits[commit_sha]

    async def tree_entries(self, repo: Repo, tree_sha: str) -> list[TreeEntry]:
        self._record("tree", repo.full_name, tree_sha)
        return self.trees[tree_sha]

    async def create_blob(self, repo: Repo, content: bytes) -> str:
        self._record("blob", repo.full_name, len(content))
        return hashlib.sha1(content).hexdigest()

    async def create_tree(self, repo: Repo, entries: list[TreeEntry], base_tree: str | None) -> str:
        self._record("create_tree", repo.full_name, tuple(entries), base_tree)
        merged = {e.path: e for e in [*self.trees.get(base_tree or "", []), *entries]}
        sha = hashlib.sha1(repr(sorted(merged.items())).encode()).hexdigest()
        self.trees[sha] = list(merged.values())
        return sha

    async def create_commit(self, repo: Repo, message: str, tree_sha: str, parents: list[str]) -> str:
        self._record("create_commit", repo.full_name, message, tree_sha, tuple(parents))
        sha = hashlib.sha1(f"{tree_sha}{parents}{len(self.commits)}".encode()).hexdigest()
        self.commits[sha] = tree_sha
        return sha

    async def create_branch(self, repo: Repo, branch: str, commit_sha: str) -> None:
        self._record("create_branch", repo.full_name, branch, commit_sha)
        self.branches[branch] = commit_sha

    async def move_branch(self, repo: Repo, branch: str, commit_sha: str) -> None:
        self._record("move_branch", repo.full_name, branch, commit_sha)
        self.branches[branch] = commit_sha

    deployment_list: list[DeploymentInfo] = field(default_factory=list)
    deployment_states: dict[int, list[str]] = field(default_factory=dict)

    async def create_deployment(
        self, repo: Repo, sha: str, environment: str, payload: dict[str, Any], description: str
    ) -> int:
        self._record("create_deployment", repo.full_name, sha, environment, payload)
        deployment = DeploymentInfo(800 + len(self.deployment_list), sha, environment, payload)
        self.deployment_list.insert(0, deployment)
        return deployment.id

    async def set_deployment_status(
        self,
        repo: Repo,
        deployment_id: int,
        state: DeploymentState,
        description: str,
        url: str = "",
        log_url: str = "",
    ) -> None:
        self._record("deployment_status", repo.full_name, deployment_id, state, description, url)
        self.deployment_states.setdefault(deployment_id, []).append(state)

    async def deployments(self, repo: Repo, environment: str) -> list[DeploymentInfo]:
        self._record("deployments", repo.full_name, environment)
        return [d for d in self.deployment_list if d.environment == environment]

    async def deployment_state(self, repo: Repo, deployment_id: int) -> str | None:
        self._record("deployment_state", repo.full_name, deployment_id)
        states = self.deployment_states.get(deployment_id)
        return states[-1] if states else None

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for call, args in self.calls if call == name]


@dataclass
class FakeApp:
    """A `GitHubApp` handing out one fake per installation."""

    github: FakeGitHub = field(default_factory=FakeGitHub)
    installations: list[int] = field(default_factory=list)

    def for_installation(self, installation_id: int) -> GitHubApi:
        self.installations.append(installation_id)
        return self.github


def flaky(times: int) -> list[Exception]:
    return [TemporaryError("GitHub answered 502") for _ in range(times)]


def comment_payload(
    body: str, number: int = 7, user: str = "octocat", user_type: str = "User"
) -> dict[str, Any]:
    return {
        "action": "created",
        "issue": {"number": number, "pull_request": {"url": "https://api.github.com/repos/o/r/pulls/7"}},
        "comment": {"id": 1000 + number, "body": body, "user": {"login": user, "type": user_type}},
        "repository": {"full_name": "octo-org/model", "name": "model", "owner": {"login": "octo-org"}},
        "installation": {"id": 42},
    }


def delivery(event: str, payload: dict[str, Any], delivery_id: str | None = None) -> Delivery:
    return Delivery(event, delivery_id or str(uuid.uuid4()), payload)


def signed_headers(
    event: str, body: bytes, delivery_id: str | None = None, secret: bytes = SECRET
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery_id or str(uuid.uuid4()),
        "x-hub-signature-256": signature_of(secret, body),
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)


def memory_inbox() -> Inbox:
    """Return an inbox (the handlers' store) over an in-memory SQLite database, its tables created."""
    inbox = Inbox(make_engine("sqlite://"))
    inbox.create_schema()
    return inbox
