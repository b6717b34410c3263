"""The GitHub calls of deploying: deployments and their statuses (the environments views)."""

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from githubkit import GitHub

from bot.events import Repo
from bot.github.calls import body_of, call

PRODUCTION = "production"  # GitHub's name for the environment merges ship to
DeploymentState = Literal["queued", "in_progress", "success", "failure", "error", "inactive", "pending"]


@dataclass(frozen=True)
class DeploymentInfo:
    """A GitHub deployment."""

    id: int
    sha: str
    environment: str
    payload: dict[str, Any] = field(default_factory=dict)


class Deployments(Protocol):
    """What deploying asks of GitHub."""

    async def create_deployment(
        self, repo: Repo, sha: str, environment: str, payload: dict[str, Any], description: str
    ) -> int:
        """Create a deployment of a commit to an environment (previews are transient) and return its id."""
        ...

    async def set_deployment_status(
        self,
        repo: Repo,
        deployment_id: int,
        state: DeploymentState,
        description: str,
        url: str = "",
        log_url: str = "",
    ) -> None:
        """Add a status to a deployment; `url` is the environment's."""
        ...

    async def deployments(self, repo: Repo, environment: str) -> list[DeploymentInfo]:
        """Return the environment's deployments, newest first."""
        ...

    async def deployment_state(self, repo: Repo, deployment_id: int) -> str | None:
        """Return the state of a deployment's latest status, or None when it has none."""
        ...


class Merges(Protocol):
    """What `/deploy` on a closed pull request asks: did it merge, and into which commit."""

    async def merge_commit(self, repo: Repo, number: int) -> str | None:
        """Return the commit a merged pull request made on its base, or None when it is not merged."""
        ...


class DeploymentsMixin:
    """`Deployments` over githubkit."""

    _github: GitHub[Any]
    _rest: Any

    async def create_deployment(
        self, repo: Repo, sha: str, environment: str, payload: dict[str, Any], description: str
    ) -> int:
        """Create a deployment; no required contexts (the training check is not a gate here)."""
        production = environment == PRODUCTION
        response = await call(
            "create_deployment",
            lambda: self._rest.repos.async_create_deployment(
                repo.owner,
                repo.name,
                ref=sha,
                environment=environment,
                auto_merge=False,
                required_contexts=[],
                payload=payload,
                description=description[:140],
                transient_environment=not production,
                production_environment=production,
            ),
        )
        return int(body_of(response)["id"])

    async def set_deployment_status(
        self,
        repo: Repo,
        deployment_id: int,
        state: DeploymentState,
        description: str,
        url: str = "",
        log_url: str = "",
    ) -> None:
        """Add a status to a deployment."""
        links = {k: v for k, v in (("environment_url", url), ("log_url", log_url)) if v}
        await call(
            "create_deployment_status",
            lambda: self._rest.repos.async_create_deployment_status(
                repo.owner, repo.name, deployment_id, state=state, description=description[:140], **links
            ),
        )

    async def deployments(self, repo: Repo, environment: str) -> list[DeploymentInfo]:
        """Return the environment's deployments, newest first."""
        response = await call(
            "list_deployments",
            lambda: self._rest.repos.async_list_deployments(
                repo.owner, repo.name, environment=environment, per_page=100
            ),
        )
        return [
            DeploymentInfo(
                int(item["id"]),
                str(item.get("sha", "")),
                str(item.get("environment", "")),
                item["payload"] if isinstance(item.get("payload"), dict) else {},
            )
            for item in body_of(response) or []
        ]

    async def deployment_state(self, repo: Repo, deployment_id: int) -> str | None:
        """Return the state of the deployment's latest status."""
        response = await call(
            "list_deployment_statuses",
            lambda: self._rest.repos.async_list_deployment_statuses(
                repo.owner, repo.name, deployment_id, per_page=1
            ),
        )
        statuses = body_of(response) or []
        return str(statuses[0]["state"]) if statuses else None

    async def merge_commit(self, repo: Repo, number: int) -> str | None:
        """Return the merge commit of a merged pull request, or None when it is not merged."""
        response = await call("get_pull", lambda: self._rest.pulls.async_get(repo.owner, repo.name, number))
        data = body_of(response)
        merged = bool(data.get("merged")) and data.get("merge_commit_sha")
        return str(data["merge_commit_sha"]) if merged else None
