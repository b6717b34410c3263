"""Previews expire: a `/deploy` preview lives `deploy.preview_ttl_hours` after its latest rollout.

A periodic pass lists the Deployments orbit manages in the models namespace (their metadata only) and
retires each preview whose time to live is over, or whose pull request closed without orbit hearing of
it (a lost webhook): one comment on an open PR saying why and how to bring it back, the environment's
GitHub deployments marked inactive, its objects deleted (`deploy.rollout.tear_down`, as a closed PR's).
Production is never a candidate. The time to live is read from `.github/orbit.yml` on the repository's
default branch; an invalid file means the default, and says so in the log.

State lives on the objects (labels, annotations): a pass may stop anywhere and the next one finishes,
saying nothing twice. A repository the App is no longer installed on is left alone: orbit cannot ask
its time to live, nor tell its pull request.
"""

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.errors import PermanentError, TemporaryError
from bot.events import Repo
from bot.github import GitHubApp
from bot.repo_config import CONFIG_PATH, DeployConfig, RepoConfigError
from deploy.flow import Deployer, say_once
from deploy.github import DeployGitHub
from deploy.manifests import DEPLOYED_AT, ENVIRONMENT, MANAGED_BY, REPOSITORY, TIMESTAMP
from deploy.policy import repo_config
from deploy.rollout import tear_down

log = logging.getLogger(__name__)
MANAGED = f"app.kubernetes.io/managed-by={MANAGED_BY}"
PREVIEW_ENVIRONMENT = re.compile(r"pr-([1-9][0-9]{0,9})")
DEFAULT_TTL_HOURS = DeployConfig().preview_ttl_hours
EVERY_SECONDS = 600.0  # how often the bot runs a pass: a preview outlives its time by ten minutes at most
CLOSED = "the pull request was closed"  # what `deploy.flow.tear_down_preview` says, for the same case


@dataclass(frozen=True)
class Preview:
    """A preview environment, as its Deployment's labels and annotations record it."""

    name: str  # the Deployment's: `<service>-pr-<N>`
    service: str
    repository: str  # owner/name
    pull: int
    deployment_id: int  # the GitHub deployment that serves
    deployed_at: datetime | None  # its latest rollout; None when the object does not say

    @property
    def environment(self) -> str:
        """Return the preview's environment, `pr-<N>`."""
        return f"pr-{self.pull}"


@dataclass
class Outcome:
    """What one pass did, by Deployment name, for logs and tests."""

    expired: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # retired because their pull request closed
    kept: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not installed, or no time on record
    failed: list[str] = field(default_factory=list)  # a GitHub or Kubernetes error left them as they were


def _timestamp(text: str | None) -> datetime | None:
    """Return a Kubernetes timestamp (`2026-05-01T12:00:00Z`) as a UTC time, None when it is not one."""
    try:
        return datetime.strptime(text or "", TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def preview_of(metadata: dict[str, Any]) -> Preview | None:
    """Return the preview a Deployment's metadata describes; None for production or another's object."""
    labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
    environment = PREVIEW_ENVIRONMENT.fullmatch(str(labels.get(ENVIRONMENT, "")))
    repository, service = str(annotations.get(REPOSITORY, "")), str(labels.get("app.kubernetes.io/name", ""))
    if labels.get("app.kubernetes.io/managed-by") != MANAGED_BY or environment is None:
        return None
    if "/" not in repository or metadata.get("name") != f"{service}-{environment.group(0)}":
        return None
    deployment_id = str(annotations.get("orbit.dev/deployment-id", ""))
    deployed = _timestamp(annotations.get(DEPLOYED_AT)) or _timestamp(metadata.get("creationTimestamp"))
    return Preview(
        metadata["name"],
        service,
        repository,
        int(environment.group(1)),
        int(deployment_id) if deployment_id.isdigit() else 0,
        deployed,
    )


def expired_note(preview: Preview, ttl_hours: int) -> str:
    """Return the PR comment that says the preview expired and how to bring it back."""
    return (
        f"The preview `{preview.environment}` expired: previews live {ttl_hours} hours after their latest "
        f"deploy (`deploy.preview_ttl_hours` in `{CONFIG_PATH}`), and its objects were deleted. "
        "Comment `/deploy` to bring it back."
    )


async def retire(github: DeployGitHub, deployer: Deployer, repo: Repo, preview: Preview, reason: str) -> bool:
    """Mark the preview's deployments inactive (up to the one serving) and delete its objects.

    A deployment newer than the one serving (a `/deploy` whose build is under way) is left to its build.
    Return False when an object of the name serves another repository (then nothing was deleted).
    """
    for deployment in await github.deployments(repo, preview.environment):
        if preview.deployment_id and deployment.id > preview.deployment_id:
            continue
        if await github.deployment_state(repo, deployment.id) != "inactive":
            await github.set_deployment_status(repo, deployment.id, "inactive", reason)
    target = deployer.target(repo, preview.environment, "", "", preview.deployment_id)
    return await tear_down(deployer.cluster, replace(target, service=preview.service))


@dataclass
class PreviewExpiry:
    """One pass over every preview orbit serves: retire the expired and the closed, keep the rest."""

    deployer: Deployer
    app: GitHubApp
    repositories: Callable[[], list[tuple[int, str]]]  # (installation, owner/name) the App can act on
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def run_once(self) -> Outcome:
        """Expire previews once; a failure on one preview does not stop the others."""
        outcome = Outcome()
        found = await asyncio.to_thread(self.deployer.cluster.list_metadata, "Deployment", MANAGED)
        installed = {name.lower(): install for install, name in self.repositories()}
        ttls: dict[str, int] = {}  # each repository's time to live, read once a pass
        for preview in filter(None, map(preview_of, found)):
            install = installed.get(preview.repository.lower())
            if install is None:
                log.warning(
                    "preview %s: %s does not have the App installed", preview.name, preview.repository
                )
                outcome.skipped.append(preview.name)
                continue
            try:
                await self._check(self.app.for_installation(install), preview, ttls, outcome)
            except (TemporaryError, PermanentError) as error:
                log.warning("expiring preview %s: %s", preview.name, error)
                outcome.failed.append(preview.name)
            except Exception:  # one repository's surprise must not stop the others' previews expiring
                log.exception("expiring preview %s failed", preview.name)
                outcome.failed.append(preview.name)
        return outcome

    async def _check(
        self, github: DeployGitHub, preview: Preview, ttls: dict[str, int], outcome: Outcome
    ) -> None:
        repo = Repo(*preview.repository.split("/", 1))
        pull = await github.pull_request(repo, preview.pull)
        if pull.state != "open":
            await retire(github, self.deployer, repo, preview, CLOSED)
            outcome.closed.append(preview.name)
            return
        if preview.deployed_at is None:
            log.warning("preview %s: no deploy time on record; kept", preview.name)
            outcome.skipped.append(preview.name)
            return
        if preview.repository not in ttls:
            ttls[preview.repository] = await _ttl_hours(github, repo, pull.default_branch)
        ttl = ttls[preview.repository]
        if self.now() - preview.deployed_at < timedelta(hours=ttl):
            outcome.kept.append(preview.name)
            return
        # The comment first: were the pass to stop after it, the next one finds the preview again
        # and goes on; its marker keeps it from being said twice.
        key = f"expired:{preview.environment}:{preview.deployment_id}"
        await say_once(github, repo, preview.pull, key, expired_note(preview, ttl))
        if await retire(github, self.deployer, repo, preview, f"the preview expired after {ttl} hours"):
            outcome.expired.append(preview.name)
        else:
            log.warning("preview %s: an object of its name serves another repository", preview.name)
            outcome.failed.append(preview.name)


async def _ttl_hours(github: DeployGitHub, repo: Repo, branch: str) -> int:
    """Return the repository's preview time to live; the default when its configuration is invalid."""
    try:
        return (await repo_config(github, repo, branch)).deploy.preview_ttl_hours
    except RepoConfigError as error:
        log.warning(
            "%s: %s is invalid, previews live %d hours: %s", repo, CONFIG_PATH, DEFAULT_TTL_HOURS, error
        )
        return DEFAULT_TTL_HOURS
