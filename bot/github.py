"""The GitHub calls handlers make, behind a Protocol, and their real implementation on githubkit.

Installation tokens are minted from the App's JWT and cached per installation by githubkit
until a minute before they expire. Failures are translated once, here, into temporary (retry)
or permanent errors.
"""

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy

from bot.github_calls import Conflict, NotFound, Unprocessable, body_of, call
from bot.github_deploys import DeploysApi, DeploysMixin
from bot.github_reports import ReportsApi, ReportsMixin, StepInfo
from bot.payloads import Repo

__all__ = ["Conflict", "NotFound", "Unprocessable"]
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
RunStatus = Literal["queued", "in_progress", "waiting", "requested", "pending"]
Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]


class GitHubApi(ReportsApi, DeploysApi, Protocol):
    """What handlers ask of GitHub, for one installation."""

    async def collaborator_permission(self, repo: Repo, username: str) -> str:
        """Return the user's permission on the repository: admin, maintain, write, triage, read or none."""
        ...

    async def add_reaction(self, repo: Repo, comment_id: int, content: Reaction) -> None:
        """React to an issue or pull request comment."""
        ...

    async def create_comment(self, repo: Repo, number: int, body: str) -> int:
        """Comment on an issue or pull request and return the comment's id."""
        ...

    async def changed_files(self, repo: Repo, number: int) -> list[str]:
        """Return the paths a pull request changes (every page)."""
        ...

    async def pull_request(self, repo: Repo, number: int) -> "PullInfo":
        """Return what training and deploying need of a pull request."""
        ...

    async def compare_files(self, repo: Repo, base: str, head: str) -> list[str]:
        """Return the paths changed between two commits."""
        ...

    async def file_text(self, repo: Repo, path: str, ref: str) -> str | None:
        """Return a file's text at a ref, or None when it does not exist."""
        ...

    async def create_check_run(self, repo: Repo, head_sha: str, name: str, title: str, summary: str) -> int:
        """Create a queued check run and return its id."""
        ...

    async def update_check_run(self, repo: Repo, check_run_id: int, update: "CheckUpdate") -> None:
        """Change a check run's status, conclusion or output."""
        ...

    async def check_runs(self, repo: Repo, ref: str, name: str) -> list[tuple[int, str]]:
        """Return (id, status) of the check runs of that name at a commit."""
        ...

    async def dispatch_workflow(self, repo: Repo, workflow: str, ref: str, inputs: dict[str, str]) -> None:
        """Start a workflow_dispatch run of a workflow file on a branch."""
        ...

    async def workflow_runs(self, repo: Repo, workflow: str, status: "RunStatus") -> list["RunInfo"]:
        """Return the workflow's runs in that status (queued, in_progress, ...)."""
        ...

    async def cancel_run(self, repo: Repo, run_id: int) -> None:
        """Cancel a workflow run; one already finished counts as cancelled."""
        ...

    async def workflow_job(self, repo: Repo, job_id: int) -> "JobInfo | None":
        """Return a workflow job, or None when GitHub does not know it."""
        ...

    async def run_jobs(self, repo: Repo, run_id: int) -> list["JobInfo"]:
        """Return the jobs of a workflow run."""
        ...

    async def generate_jit_config(
        self, repo: Repo, name: str, labels: list[str], runner_group_id: int
    ) -> tuple[int, str]:
        """Register a just-in-time runner; return its id and its encoded configuration."""
        ...

    async def find_runner(self, repo: Repo, name: str) -> int | None:
        """Return the id of the repository's self-hosted runner of that name, if registered."""
        ...

    async def delete_runner(self, repo: Repo, runner_id: int) -> None:
        """Remove a self-hosted runner; one already gone counts as removed."""
        ...


@dataclass(frozen=True)
class PullInfo:
    """A pull request's head, base and state."""

    number: int
    head_sha: str
    head_repo: str
    base_repo: str
    base_ref: str
    default_branch: str
    draft: bool
    state: str


@dataclass(frozen=True)
class RunInfo:
    """A workflow run."""

    id: int
    status: str
    title: str
    head_sha: str


@dataclass(frozen=True)
class JobInfo:
    """A workflow job."""

    id: int
    run_id: int
    status: str
    labels: list[str]
    head_sha: str
    html_url: str
    runner_name: str
    created_at: str
    name: str = ""
    conclusion: str = ""
    steps: tuple[StepInfo, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CheckUpdate:
    """The fields of a check run to change; None leaves a field as it is."""

    status: str | None = None
    conclusion: str | None = None
    title: str | None = None
    summary: str | None = None
    details_url: str | None = None


class GitHubApp(Protocol):
    """The App: hands out a client acting as one of its installations."""

    def for_installation(self, installation_id: int) -> GitHubApi:
        """Return a client authenticated as the installation."""
        ...


class InstallationClient(ReportsMixin, DeploysMixin):
    """`GitHubApi` over githubkit, as one installation."""

    def __init__(self, github: GitHub[AppAuthStrategy], installation_id: int) -> None:
        self._github = github.with_auth(github.auth.as_installation(installation_id))
        self._rest = self._github.rest

    async def collaborator_permission(self, repo: Repo, username: str) -> str:
        """Return the user's permission on the repository."""
        response = await call(
            "get_collaborator_permission",
            lambda: self._github.rest.repos.async_get_collaborator_permission_level(
                repo.owner, repo.name, username
            ),
        )
        return str(body_of(response).get("permission", "none"))

    async def add_reaction(self, repo: Repo, comment_id: int, content: Reaction) -> None:
        """React to a comment."""
        await call(
            "create_reaction",
            lambda: self._github.rest.reactions.async_create_for_issue_comment(
                repo.owner,
                repo.name,
                comment_id,
                content=content,
            ),
        )

    async def create_comment(self, repo: Repo, number: int, body: str) -> int:
        """Comment on an issue or pull request."""
        response = await call(
            "create_comment",
            lambda: self._github.rest.issues.async_create_comment(repo.owner, repo.name, number, body=body),
        )
        return int(body_of(response)["id"])

    async def changed_files(self, repo: Repo, number: int) -> list[str]:
        """Return the paths a pull request changes, following every page."""

        async def collect() -> list[str]:
            pages = self._github.rest.paginate(
                self._github.rest.pulls.async_list_files,
                owner=repo.owner,
                repo=repo.name,
                pull_number=number,
                per_page=100,
                map_func=body_of,
            )
            return [str(item["filename"]) async for item in pages]

        return await call("list_pull_files", collect)

    async def pull_request(self, repo: Repo, number: int) -> PullInfo:
        """Return a pull request's head, base and state."""
        response = await call("get_pull", lambda: self._rest.pulls.async_get(repo.owner, repo.name, number))
        data = body_of(response)
        return PullInfo(
            number=number,
            head_sha=str(data["head"]["sha"]),
            head_repo=str((data["head"].get("repo") or {}).get("full_name", "")),
            base_repo=str(data["base"]["repo"]["full_name"]),
            base_ref=str(data["base"]["ref"]),
            default_branch=str(data["base"]["repo"].get("default_branch", data["base"]["ref"])),
            draft=bool(data.get("draft", False)),
            state=str(data.get("state", "open")),
        )

    async def compare_files(self, repo: Repo, base: str, head: str) -> list[str]:
        """Return the paths changed between two commits."""
        response = await call(
            "compare",
            lambda: self._rest.repos.async_compare_commits(repo.owner, repo.name, f"{base}...{head}"),
        )
        return [str(item["filename"]) for item in body_of(response).get("files") or []]

    async def file_text(self, repo: Repo, path: str, ref: str) -> str | None:
        """Return a file's text at a ref, or None when it does not exist."""
        try:
            response = await call(
                "get_content",
                lambda: self._rest.repos.async_get_content(
                    repo.owner,
                    repo.name,
                    path,
                    ref=ref,
                    headers={"Accept": "application/vnd.github.raw+json"},
                ),
            )
        except NotFound:
            return None
        return str(response.text)

    async def create_check_run(self, repo: Repo, head_sha: str, name: str, title: str, summary: str) -> int:
        """Create a queued check run and return its id."""
        response = await call(
            "create_check_run",
            lambda: self._rest.checks.async_create(
                repo.owner,
                repo.name,
                name=name,
                head_sha=head_sha,
                status="queued",
                output={"title": title, "summary": summary},
            ),
        )
        return int(body_of(response)["id"])

    async def update_check_run(self, repo: Repo, check_run_id: int, update: CheckUpdate) -> None:
        """Change a check run's status, conclusion or output."""
        fields: dict[str, Any] = {
            k: v
            for k, v in (
                ("status", update.status),
                ("conclusion", update.conclusion),
                ("details_url", update.details_url),
            )
            if v is not None
        }
        if update.title is not None and update.summary is not None:
            fields["output"] = {"title": update.title, "summary": update.summary[:65_000]}
        if update.conclusion is not None:
            fields["status"] = "completed"
        await call(
            "update_check_run",
            lambda: self._rest.checks.async_update(repo.owner, repo.name, check_run_id, **fields),
        )

    async def check_runs(self, repo: Repo, ref: str, name: str) -> list[tuple[int, str]]:
        """Return (id, status) of the check runs of that name at a commit."""
        response = await call(
            "list_check_runs",
            lambda: self._rest.checks.async_list_for_ref(
                repo.owner, repo.name, ref, check_name=name, filter_="all"
            ),
        )
        return [(int(run["id"]), str(run["status"])) for run in body_of(response).get("check_runs") or []]

    async def dispatch_workflow(self, repo: Repo, workflow: str, ref: str, inputs: dict[str, str]) -> None:
        """Start a workflow_dispatch run (GitHub answers 204, with no body to read)."""
        await call(
            "dispatch_workflow",
            lambda: self._rest.actions.async_create_workflow_dispatch(
                repo.owner, repo.name, workflow, ref=ref, inputs=inputs
            ),
        )

    async def workflow_runs(self, repo: Repo, workflow: str, status: "RunStatus") -> list[RunInfo]:
        """Return the workflow's runs in that status."""
        response = await call(
            "list_workflow_runs",
            lambda: self._rest.actions.async_list_workflow_runs(
                repo.owner,
                repo.name,
                workflow,
                status=status,
                per_page=100,
            ),
        )
        return [
            RunInfo(
                int(run["id"]),
                str(run.get("status", "")),
                str(run.get("display_title") or run.get("name") or ""),
                str(run.get("head_sha", "")),
            )
            for run in body_of(response).get("workflow_runs") or []
        ]

    async def cancel_run(self, repo: Repo, run_id: int) -> None:
        """Cancel a run; a 409 (already finished) counts as done."""
        try:
            await call(
                "cancel_run",
                lambda: self._rest.actions.async_cancel_workflow_run(repo.owner, repo.name, run_id),
            )
        except Conflict:
            return

    async def workflow_job(self, repo: Repo, job_id: int) -> JobInfo | None:
        """Return a workflow job, or None when GitHub does not know it."""
        try:
            response = await call(
                "get_job",
                lambda: self._rest.actions.async_get_job_for_workflow_run(repo.owner, repo.name, job_id),
            )
        except NotFound:
            return None
        return _job(body_of(response))

    async def run_jobs(self, repo: Repo, run_id: int) -> list[JobInfo]:
        """Return the jobs of a workflow run."""
        response = await call(
            "list_jobs",
            lambda: self._rest.actions.async_list_jobs_for_workflow_run(
                repo.owner, repo.name, run_id, per_page=100
            ),
        )
        return [_job(job) for job in body_of(response).get("jobs") or []]

    async def generate_jit_config(
        self, repo: Repo, name: str, labels: list[str], runner_group_id: int
    ) -> tuple[int, str]:
        """Register a just-in-time runner; return its id and its encoded configuration."""
        response = await call(
            "generate_jitconfig",
            lambda: self._rest.actions.async_generate_runner_jitconfig_for_repo(
                repo.owner,
                repo.name,
                name=name,
                runner_group_id=runner_group_id,
                labels=labels,
                work_folder="_work",
            ),
        )
        data = body_of(response)
        return int(data["runner"]["id"]), str(data["encoded_jit_config"])

    async def find_runner(self, repo: Repo, name: str) -> int | None:
        """Return the id of the repository's self-hosted runner of that name, if registered."""
        response = await call(
            "list_runners",
            lambda: self._rest.actions.async_list_self_hosted_runners_for_repo(
                repo.owner, repo.name, name=name
            ),
        )
        runners = [r for r in body_of(response).get("runners") or [] if r.get("name") == name]
        return int(runners[0]["id"]) if runners else None

    async def delete_runner(self, repo: Repo, runner_id: int) -> None:
        """Remove a self-hosted runner; one already gone counts as removed."""
        try:
            await call(
                "delete_runner",
                lambda: self._rest.actions.async_delete_self_hosted_runner_from_repo(
                    repo.owner, repo.name, runner_id
                ),
            )
        except NotFound:
            return


def _job(data: dict[str, Any]) -> JobInfo:
    return JobInfo(
        id=int(data["id"]),
        run_id=int(data.get("run_id") or 0),
        status=str(data.get("status", "")),
        labels=[str(label) for label in data.get("labels") or []],
        head_sha=str(data.get("head_sha", "")),
        html_url=str(data.get("html_url") or ""),
        runner_name=str(data.get("runner_name") or ""),
        created_at=str(data.get("created_at") or ""),
        name=str(data.get("name") or ""),
        conclusion=str(data.get("conclusion") or ""),
        steps=tuple(
            StepInfo(
                int(step.get("number") or 0), str(step.get("name") or ""), str(step.get("conclusion") or "")
            )
            for step in data.get("steps") or []
            if isinstance(step, dict)
        ),
    )


class SharedTransport(httpx.AsyncHTTPTransport):
    """A transport that outlives the clients using it.

    githubkit opens an `httpx.AsyncClient` per request and closes it after; closing a client
    closes its transport, which would drop the connections of every other request in flight.
    """

    async def aclose(self) -> None:
        """Keep the pool open: it lives as long as the process."""


class GitHubAppClient:
    """`GitHubApp` over githubkit; one instance shares the token cache of every installation."""

    def __init__(self, app_id: int, private_key: str, api_url: str) -> None:
        self._github = GitHub(
            AppAuthStrategy(str(app_id), private_key),
            base_url=api_url,
            auto_retry=False,  # retries belong to the inbox, which knows the attempt count
            cache_strategy=MemCacheStrategy(),  # tokens cached per client, not per process
            http_cache=False,  # handlers need fresh state (is the job still queued?), not cached pages
            # One shared transport: connections are reused, and no TLS context is built per request.
            async_transport=SharedTransport(retries=0),
        )

    def for_installation(self, installation_id: int) -> GitHubApi:
        """Return a client acting as the installation."""
        return InstallationClient(self._github, installation_id)
