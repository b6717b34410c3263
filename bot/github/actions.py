"""GitHub Actions: dispatch and list workflow runs, their jobs, logs and artifacts."""

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from githubkit import GitHub

from bot.events import Repo
from bot.github.calls import Conflict, NotFound, body_of, call

RunStatus = Literal["queued", "in_progress", "waiting", "requested", "pending"]


@dataclass(frozen=True)
class RunInfo:
    """A workflow run."""

    id: int
    status: str
    title: str
    head_sha: str


@dataclass(frozen=True)
class StepInfo:
    """A step of a workflow job."""

    number: int
    name: str
    conclusion: str


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
class ArtifactInfo:
    """An artifact of a workflow run."""

    id: int
    name: str
    expired: bool
    size: int


class Workflows(Protocol):
    """Start, list and cancel workflow runs."""

    async def dispatch_workflow(self, repo: Repo, workflow: str, ref: str, inputs: dict[str, str]) -> None:
        """Start a workflow_dispatch run of a workflow file on a branch."""
        ...

    async def workflow_runs(self, repo: Repo, workflow: str, status: "RunStatus") -> list["RunInfo"]:
        """Return the workflow's runs in that status (queued, in_progress, ...)."""
        ...

    async def cancel_run(self, repo: Repo, run_id: int) -> None:
        """Cancel a workflow run; one already finished counts as cancelled."""
        ...


class Jobs(Protocol):
    """Read workflow jobs and their logs."""

    async def workflow_job(self, repo: Repo, job_id: int) -> "JobInfo | None":
        """Return a workflow job, or None when GitHub does not know it."""
        ...

    async def run_jobs(self, repo: Repo, run_id: int) -> list["JobInfo"]:
        """Return the jobs of a workflow run."""
        ...

    async def job_log(self, repo: Repo, job_id: int) -> str:
        """Return a workflow job's log as text."""
        ...


class Artifacts(Protocol):
    """Read a workflow run's artifacts."""

    async def run_artifacts(self, repo: Repo, run_id: int) -> list[ArtifactInfo]:
        """Return the artifacts of a workflow run."""
        ...

    async def download_artifact(self, repo: Repo, artifact_id: int) -> bytes:
        """Return an artifact's zip archive."""
        ...


async def named_artifact(github: Artifacts, repo: Repo, run_id: int, name: str) -> bytes | None:
    """Return the zip of the run's unexpired artifact of that name, or None when there is none."""
    found = [a for a in await github.run_artifacts(repo, run_id) if a.name == name and not a.expired]
    return await github.download_artifact(repo, found[0].id) if found else None


class ActionsMixin:
    """`Workflows`, `Jobs` and `Artifacts` over githubkit."""

    _github: GitHub[Any]
    _rest: Any

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

    async def job_log(self, repo: Repo, job_id: int) -> str:
        """Return a workflow job's log as text."""
        response = await call(
            "download_job_log",
            lambda: self._rest.actions.async_download_job_logs_for_workflow_run(
                repo.owner, repo.name, job_id
            ),
        )
        return str(response.text)

    async def run_artifacts(self, repo: Repo, run_id: int) -> list[ArtifactInfo]:
        """Return the artifacts of a workflow run."""
        response = await call(
            "list_run_artifacts",
            lambda: self._rest.actions.async_list_workflow_run_artifacts(
                repo.owner, repo.name, run_id, per_page=100
            ),
        )
        return [
            ArtifactInfo(
                int(item["id"]),
                str(item.get("name", "")),
                bool(item.get("expired")),
                int(item.get("size_in_bytes") or 0),
            )
            for item in body_of(response).get("artifacts") or []
        ]

    async def download_artifact(self, repo: Repo, artifact_id: int) -> bytes:
        """Return an artifact's zip (GitHub redirects to storage; the token is not sent there)."""
        response = await call(
            "download_artifact",
            lambda: self._rest.actions.async_download_artifact(repo.owner, repo.name, artifact_id, "zip"),
        )
        return bytes(response.content)


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
