"""Self-hosted runners: register a just-in-time runner, find one, remove one."""

from typing import Any, Protocol

from githubkit import GitHub

from bot.events import Repo
from bot.github.calls import NotFound, body_of, call


class SelfHostedRunners(Protocol):
    """A repository's self-hosted runners."""

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


class RunnersMixin:
    """`SelfHostedRunners` over githubkit."""

    _github: GitHub[Any]
    _rest: Any

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
