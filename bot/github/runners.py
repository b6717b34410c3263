"""Self-hosted runners: register a just-in-time runner, find one, remove one.

A runner is registered on the repository (`runner_group_id` None), or in an organisation runner group
(`runner_group_id` its id): a group restricted to orbit's workflows gives orbit's pods to no other
workflow of the organisation (docs/install.md, step 6).
"""

from typing import Any, Protocol

from githubkit import GitHub

from bot.events import Repo
from bot.github.calls import NotFound, body_of, call
from bot.github.direct import THROUGH_GITHUBKIT, DirectCalls, repo_path, segment

REPOSITORY_GROUP = 1  # a repository's runners are all in its one group, the default


class SelfHostedRunners(Protocol):
    """A repository's self-hosted runners."""

    async def generate_jit_config(
        self, repo: Repo, name: str, labels: list[str], runner_group_id: int | None
    ) -> tuple[int, str]:
        """Register a just-in-time runner; return its id and its encoded configuration."""
        ...

    async def find_runner(self, repo: Repo, name: str, in_organization: bool = False) -> int | None:
        """Return the id of the repository's (or its organisation's) runner of that name, if registered."""
        ...

    async def delete_runner(self, repo: Repo, runner_id: int, in_organization: bool = False) -> None:
        """Remove a self-hosted runner; one already gone counts as removed."""
        ...


class RunnersMixin:
    """`SelfHostedRunners` over githubkit."""

    _github: GitHub[Any]
    _rest: Any
    _direct: DirectCalls

    async def generate_jit_config(
        self, repo: Repo, name: str, labels: list[str], runner_group_id: int | None
    ) -> tuple[int, str]:
        """Register a just-in-time runner; return its id and its encoded configuration."""
        fields: dict[str, Any] = {"name": name, "labels": labels, "work_folder": "_work"}
        path = (
            f"{repo_path(repo)}/actions/runners/generate-jitconfig"
            if runner_group_id is None
            else f"/orgs/{segment(repo.owner)}/actions/runners/generate-jitconfig"
        )
        body = {**fields, "runner_group_id": REPOSITORY_GROUP if runner_group_id is None else runner_group_id}
        data = await self._direct.json("generate_jitconfig", "POST", path, body)
        if data is THROUGH_GITHUBKIT:
            actions = self._rest.actions
            response = await call(
                "generate_jitconfig",
                lambda: (
                    actions.async_generate_runner_jitconfig_for_repo(
                        repo.owner, repo.name, runner_group_id=REPOSITORY_GROUP, **fields
                    )
                    if runner_group_id is None
                    else actions.async_generate_runner_jitconfig_for_org(
                        repo.owner, runner_group_id=runner_group_id, **fields
                    )
                ),
            )
            data = body_of(response)
        return int(data["runner"]["id"]), str(data["encoded_jit_config"])

    async def find_runner(self, repo: Repo, name: str, in_organization: bool = False) -> int | None:
        """Return the id of the repository's (or its organisation's) runner of that name, if registered."""
        actions = self._rest.actions
        response = await call(
            "list_runners",
            lambda: (
                actions.async_list_self_hosted_runners_for_org(repo.owner, name=name)
                if in_organization
                else actions.async_list_self_hosted_runners_for_repo(repo.owner, repo.name, name=name)
            ),
        )
        runners = [r for r in body_of(response).get("runners") or [] if r.get("name") == name]
        return int(runners[0]["id"]) if runners else None

    async def delete_runner(self, repo: Repo, runner_id: int, in_organization: bool = False) -> None:
        """Remove a self-hosted runner; one already gone counts as removed."""
        actions = self._rest.actions
        try:
            await call(
                "delete_runner",
                lambda: (
                    actions.async_delete_self_hosted_runner_from_org(repo.owner, runner_id)
                    if in_organization
                    else actions.async_delete_self_hosted_runner_from_repo(repo.owner, repo.name, runner_id)
                ),
            )
        except NotFound:
            return
