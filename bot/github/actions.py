"""GitHub Actions: dispatch and list workflow runs, their jobs, logs and artifacts."""

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
from githubkit import GitHub

from bot.errors import PermanentError
from bot.events import Repo
from bot.github.calls import Conflict, NotFound, body_of, call
from bot.github.direct import THROUGH_GITHUBKIT, DirectCalls, repo_path

RunStatus = Literal["queued", "in_progress", "waiting", "requested", "pending"]
# The most an artifact download reads unless its caller says less: an artifact's content is untrusted,
# and it is held in memory whole.
MAX_ARTIFACT_BYTES = 48 * 1024 * 1024
# How much of the end of a job's log is kept (the failure report shows the lines before the last error).
MAX_LOG_TAIL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class RunInfo:
    """A workflow run."""

    id: int
    status: str
    title: str
    head_sha: str
    path: str = ""
    event: str = ""
    head_repo: str = ""


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

    async def dispatch_workflow(self, repo: Repo, workflow: str, ref: str, inputs: dict[str, str]) -> int:
        """Start a workflow_dispatch run of a workflow file on a branch; return the new run's id."""
        ...

    async def workflow_run(self, repo: Repo, run_id: int) -> "RunInfo":
        """Return one workflow run: where its workflow file is, what started it, which commit it runs."""
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
        """Return the end of a workflow job's log as text (its last `MAX_LOG_TAIL_BYTES`, whole lines)."""
        ...


class Artifacts(Protocol):
    """Read a workflow run's artifacts."""

    async def run_artifacts(self, repo: Repo, run_id: int) -> list[ArtifactInfo]:
        """Return the artifacts of a workflow run."""
        ...

    async def download_artifact(
        self, repo: Repo, artifact_id: int, max_bytes: int = MAX_ARTIFACT_BYTES
    ) -> bytes:
        """Return an artifact's zip archive; raise `ArtifactTooLarge` rather than read past `max_bytes`."""
        ...


class ArtifactTooLarge(PermanentError):
    """An artifact is larger than its reader accepts: it is not downloaded, or not past the limit."""

    def __init__(self, artifact_id: int, size: int | None, limit: int) -> None:
        said = f"{size:,} bytes" if size is not None else "more than that"
        super().__init__(f"artifact {artifact_id} is {said}; at most {limit:,} bytes are read")
        self.size, self.limit = size, limit


async def named_artifact(
    github: Artifacts, repo: Repo, run_id: int, name: str, max_bytes: int = MAX_ARTIFACT_BYTES
) -> bytes | None:
    """Return the zip of the run's unexpired artifact of that name, or None when there is none.

    An artifact listed as larger than `max_bytes` is refused before any download; one whose listed
    size understates it is cut off at `max_bytes` (both: `ArtifactTooLarge`).
    """
    found = [a for a in await github.run_artifacts(repo, run_id) if a.name == name and not a.expired]
    if not found:
        return None
    if found[0].size > max_bytes:
        raise ArtifactTooLarge(found[0].id, found[0].size, max_bytes)
    return await github.download_artifact(repo, found[0].id, max_bytes)


class ActionsMixin:
    """`Workflows`, `Jobs` and `Artifacts` over githubkit."""

    _github: GitHub[Any]
    _rest: Any
    _direct: DirectCalls

    async def dispatch_workflow(self, repo: Repo, workflow: str, ref: str, inputs: dict[str, str]) -> int:
        """Start a workflow_dispatch run and return its id (`return_run_details`: 200 with the run)."""
        response = await call(
            "dispatch_workflow",
            lambda: self._github.arequest(
                "POST",
                f"/repos/{repo.owner}/{repo.name}/actions/workflows/{workflow}/dispatches",
                json={"ref": ref, "inputs": inputs, "return_run_details": True},
            ),
        )
        return int(body_of(response)["workflow_run_id"])

    async def workflow_run(self, repo: Repo, run_id: int) -> RunInfo:
        """Return one workflow run."""
        response = await call(
            "get_workflow_run",
            lambda: self._rest.actions.async_get_workflow_run(repo.owner, repo.name, run_id),
        )
        return _run(body_of(response))

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
        return [_run(run) for run in body_of(response).get("workflow_runs") or []]

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
            answer = await self._direct.json("get_job", "GET", f"{repo_path(repo)}/actions/jobs/{job_id}")
            if answer is THROUGH_GITHUBKIT:
                answer = body_of(
                    await call(
                        "get_job",
                        lambda: self._rest.actions.async_get_job_for_workflow_run(
                            repo.owner, repo.name, job_id
                        ),
                    )
                )
        except NotFound:
            return None
        return _job(answer)

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
        """Return the end of a job's log: streamed, only its last `MAX_LOG_TAIL_BYTES` kept.

        The job ran a pull request's code, which decides how long its log is.
        """

        async def stream() -> str:
            response = await self._rest.actions.async_download_job_logs_for_workflow_run(
                repo.owner, repo.name, job_id, stream=True
            )
            raw: httpx.Response = response.raw_response
            tail = bytearray()
            cut = False
            try:
                async for chunk in raw.aiter_bytes():
                    tail += chunk
                    if len(tail) > 2 * MAX_LOG_TAIL_BYTES:  # trimmed now and then, not at every chunk
                        del tail[: len(tail) - MAX_LOG_TAIL_BYTES]
                        cut = True
            finally:
                await raw.aclose()
            if len(tail) > MAX_LOG_TAIL_BYTES:
                del tail[: len(tail) - MAX_LOG_TAIL_BYTES]
                cut = True
            if cut:  # the first line is a piece of one
                del tail[: tail.find(b"\n") + 1]
            return tail.decode(errors="replace")

        return await call("download_job_log", stream)

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

    async def download_artifact(
        self, repo: Repo, artifact_id: int, max_bytes: int = MAX_ARTIFACT_BYTES
    ) -> bytes:
        """Return an artifact's zip, streamed and cut off past `max_bytes` (`ArtifactTooLarge`).

        GitHub redirects to storage; httpx drops the token on a redirect to another origin.
        """

        async def stream() -> bytes:
            response = await self._rest.actions.async_download_artifact(
                repo.owner, repo.name, artifact_id, "zip", stream=True
            )
            raw: httpx.Response = response.raw_response
            try:
                declared = raw.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:  # said before a byte is read
                    raise ArtifactTooLarge(artifact_id, int(declared), max_bytes)
                chunks: list[bytes] = []
                size = 0
                async for chunk in raw.aiter_bytes():  # decoded: what the caller gets
                    size += len(chunk)
                    if size > max_bytes:
                        raise ArtifactTooLarge(artifact_id, None, max_bytes)
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                await raw.aclose()

        return await call("download_artifact", stream)


def _run(data: dict[str, Any]) -> RunInfo:
    return RunInfo(
        int(data["id"]),
        str(data.get("status") or ""),
        str(data.get("display_title") or data.get("name") or ""),
        str(data.get("head_sha") or ""),
        str(data.get("path") or ""),
        str(data.get("event") or ""),
        str((data.get("head_repository") or {}).get("full_name") or ""),
    )


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
