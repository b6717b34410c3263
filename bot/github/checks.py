"""Check runs: create one, change it, find those of a name at a commit."""

from dataclasses import dataclass
from typing import Any, Protocol

from githubkit import GitHub

from bot.events import Repo
from bot.github.calls import body_of, call


@dataclass(frozen=True)
class CheckUpdate:
    """The fields of a check run to change; None leaves a field as it is."""

    status: str | None = None
    conclusion: str | None = None
    title: str | None = None
    summary: str | None = None
    details_url: str | None = None


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
