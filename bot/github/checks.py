"""Check runs: create one, change it, find those of a name at a commit."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from githubkit import GitHub

from bot.events import Repo
from bot.github.calls import body_of, call

MAX_ANNOTATIONS = 50  # GitHub takes at most 50 annotations per request; more go in further updates
AnnotationLevel = Literal["notice", "warning", "failure"]


@dataclass(frozen=True)
class Annotation:
    """A check run annotation: a message on a line of a file of the commit."""

    path: str
    line: int
    message: str
    level: AnnotationLevel = "failure"
    title: str = ""

    def as_json(self) -> dict[str, Any]:
        """Return the annotation as the Checks API takes it."""
        fields: dict[str, Any] = {
            "path": self.path,
            "start_line": max(self.line, 1),
            "end_line": max(self.line, 1),
            "annotation_level": self.level,
            "message": self.message[:64_000],
        }
        return {**fields, "title": self.title[:255]} if self.title else fields


@dataclass(frozen=True)
class CheckUpdate:
    """The fields of a check run to change; None leaves a field as it is."""

    status: str | None = None
    conclusion: str | None = None
    title: str | None = None
    summary: str | None = None
    details_url: str | None = None
    annotations: tuple[Annotation, ...] = ()  # sent with the title and summary, 50 a request


@dataclass(frozen=True)
class CheckRunInfo:
    """A check run as the list of a commit's check runs shows it."""

    id: int
    name: str
    status: str
    conclusion: str | None
    title: str | None
    html_url: str
    app_slug: str  # the App that created it: only orbit's own count


class Checks(Protocol):
    """The Checks API."""

    async def create_check_run(self, repo: Repo, head_sha: str, name: str, title: str, summary: str) -> int:
        """Create a queued check run and return its id."""
        ...

    async def update_check_run(self, repo: Repo, check_run_id: int, update: "CheckUpdate") -> None:
        """Change a check run's status, conclusion or output."""
        ...

    async def check_runs(self, repo: Repo, ref: str, name: str) -> list[tuple[int, str]]:
        """Return (id, status) of the check runs of that name at a commit."""
        ...


class CheckDetails(Protocol):
    """The Checks API, read in full: what a check run concluded and who made it."""

    async def check_run_details(self, repo: Repo, ref: str, name: str) -> list[CheckRunInfo]:
        """Return the check runs of that name at a commit, with their conclusion, title and App."""
        ...


class ChecksMixin:
    """`Checks` over githubkit."""

    _github: GitHub[Any]
    _rest: Any

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
        output: dict[str, Any] | None = None
        if update.title is not None and update.summary is not None:
            output = {"title": update.title, "summary": update.summary[:65_000]}
        if update.conclusion is not None:
            fields["status"] = "completed"
        batches = _batches(update.annotations)
        await self._patch_check(repo, check_run_id, fields, output, next(batches, []))
        for batch in batches:  # GitHub appends each request's annotations to the run's
            await self._patch_check(repo, check_run_id, {}, output, batch)

    async def _patch_check(
        self,
        repo: Repo,
        check_run_id: int,
        fields: dict[str, Any],
        output: dict[str, Any] | None,
        annotations: list[dict[str, Any]],
    ) -> None:
        if output is not None:
            fields = {**fields, "output": {**output, **({"annotations": annotations} if annotations else {})}}
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

    async def check_run_details(self, repo: Repo, ref: str, name: str) -> list[CheckRunInfo]:
        """Return the check runs of that name at a commit, with their conclusion, title and App."""
        response = await call(
            "list_check_runs",
            lambda: self._rest.checks.async_list_for_ref(
                repo.owner, repo.name, ref, check_name=name, filter_="all"
            ),
        )
        return [_check_run_info(run) for run in body_of(response).get("check_runs") or []]


def _check_run_info(run: dict[str, Any]) -> CheckRunInfo:
    output, app = run.get("output") or {}, run.get("app") or {}
    return CheckRunInfo(
        id=int(run["id"]),
        name=str(run.get("name", "")),
        status=str(run.get("status", "")),
        conclusion=run.get("conclusion"),
        title=output.get("title"),
        html_url=str(run.get("html_url") or ""),
        app_slug=str(app.get("slug") or ""),
    )


def _batches(annotations: tuple[Annotation, ...]) -> Iterator[list[dict[str, Any]]]:
    """Yield the annotations as the Checks API takes them, at most `MAX_ANNOTATIONS` at a time."""
    for start in range(0, len(annotations), MAX_ANNOTATIONS):
        yield [a.as_json() for a in annotations[start : start + MAX_ANNOTATIONS]]
