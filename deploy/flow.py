"""Deploying: merged PRs ship to production, `/deploy` previews, `/rollback` restores, closing tears down.

The bot creates the GitHub deployment and dispatches deploy.yml, which builds and pushes the image on
an orbit-cpu runner. When that run completes, the bot rolls the image out (newest deployment of an
environment wins; older ones are marked inactive), and reports through deployment statuses and a
PR comment. Each repository's model has objects of its own (`Deployer.service`); each deploy is
counted and timed (`deploy.metrics`).
"""

import asyncio
import functools
import time
from dataclasses import dataclass, replace

from bot import pinning
from bot.context import CommandCall, Context, Store
from bot.dispatch import accepted, already_done, dispatch, done, observed
from bot.events import PullRequestEvent, Repo, WorkflowRunEvent
from bot.github import PullInfo
from bot.github.deployments import PRODUCTION, DeploymentInfo
from bot.repo_config import RepoConfigError
from bot.router import Router
from bot.runs import DEPLOY, DEPLOY_WORKFLOW, DeployRun, by_trigger
from deploy.github import DeployGitHub
from deploy.image import ImageError, read_image
from deploy.kube import ModelCluster
from deploy.manifests import Target, revisions, serves_another, service_name
from deploy.metrics import DeployOutcome, outcome_of, record_deploy
from deploy.policy import (
    ADMIN,
    UnknownFlag,
    flags_of,
    forced_note,
    has_gates,
    invalid_config,
    refused_by_gates,
    repo_config,
    training_check,
)
from deploy.rollout import Outcome, Timing, roll_out, tear_down

DEFAULT_TIMING = Timing()
ROLLED_OUT = "rolled out"


@dataclass(frozen=True)
class Deployer:
    """Where and how models are rolled out; each repository's model under names of its own."""

    cluster: ModelCluster
    namespace: str
    service_override: str  # "": each repository's `service_name`; else one name (single repository)
    registry: str
    domain: str
    tls_issuer: str | None = None
    ingress_class: str | None = None
    timing: Timing = DEFAULT_TIMING
    pull_secret: str | None = None  # a docker-registry Secret in `namespace`
    # A Secret in `namespace` whose `api-key` production's endpoint asks for; a preview's asks for the
    # key of `<api_key_secret>-preview` (`Target.key_secret`): PR code never holds production's key.
    api_key_secret: str | None = None

    def service(self, repo: Repo) -> str:
        """Return the name of a repository's model objects."""
        return self.service_override or service_name(repo.full_name)

    def target(self, repo: Repo, environment: str, image: str, sha: str, deployment_id: int) -> Target:
        """Return the rollout target of a repository's environment."""
        return Target(
            self.service(repo),
            repo.full_name,
            environment,
            self.namespace,
            image,
            sha,
            deployment_id,
            self.domain,
            self.tls_issuer,
            self.ingress_class,
            pull_secret=self.pull_secret,
            api_key_secret=self.api_key_secret,
        )


@dataclass(frozen=True)
class ReportedDeployRun(DeployRun):
    """A deploy.yml run that also carries the training report's URL (the `report_url` input)."""

    report_url: str = ""

    @property
    def inputs(self) -> dict[str, str]:
        """Return deploy.yml's inputs, with `report_url` when the commit has a training report."""
        return {**super().inputs, **({"report_url": self.report_url} if self.report_url else {})}


@dataclass(frozen=True)
class DeployRequest:
    """What to deploy where, and what its statuses say besides: the report's link, a forced gate."""

    pull: int
    environment: str
    sha: str
    branch: str
    trigger: str
    report_url: str = ""
    note: str = ""  # "forced past gate val_acc >= 0.9 by @admin"


async def request_deploy(github: DeployGitHub, store: Store, repo: Repo, request: DeployRequest) -> int:
    """Create the deployment (queued) and dispatch the trusted deploy.yml to build its image.

    Safe to repeat: a trigger that started a build starts none again, and the deployment a
    previous attempt created for the same trigger is reused.
    """
    started = await asyncio.to_thread(
        store.read, functools.partial(by_trigger, repository=repo.full_name, trigger=request.trigger)
    )
    if started is not None and started.deploy is not None:
        return started.deploy.deployment_id
    deployment = await _deployment_for(github, repo, request)
    waiting = "waiting for the image build" + (f"; {request.note}" if request.note else "")
    await github.set_deployment_status(repo, deployment, "queued", waiting, log_url=request.report_url)
    run = ReportedDeployRun(request.pull, request.environment, deployment, request.sha, request.report_url)
    await dispatch(github, store, repo, DEPLOY, DEPLOY_WORKFLOW, request.branch, run, request.trigger)
    return deployment


async def _deployment_for(github: DeployGitHub, repo: Repo, request: DeployRequest) -> int:
    """Return the trigger's deployment: the one an earlier attempt created, else a new one."""
    for existing in await github.deployments(repo, request.environment):
        if existing.payload.get("trigger") == request.trigger and existing.sha == request.sha:
            return existing.id
    payload: dict[str, object] = {"pr": request.pull, "trigger": request.trigger}
    payload |= {k: v for k, v in (("report_url", request.report_url), ("note", request.note)) if v}
    description = f"PR #{request.pull} to {request.environment}"
    return await github.create_deployment(repo, request.sha, request.environment, payload, description)


async def say_once(github: DeployGitHub, repo: Repo, pull: int, key: str, body: str) -> None:
    """Comment on the PR unless orbit already said this (a redelivered merge says it once)."""
    marker = f"<!-- orbit:deploy {key} -->"
    own = await github.own_login()
    if any(c.author == own and marker in c.body for c in await github.issue_comments(repo, pull)):
        return
    await github.create_comment(repo, pull, f"{marker}\n{body}")


async def ship_merge(
    github: DeployGitHub, store: Store, repo: Repo, pull: int, merged: str, head: str, default: str
) -> None:
    """Deploy a merge into the default branch to production, as the policy and the gates allow."""
    trigger = f"merge:{merged}"
    try:
        config = await repo_config(github, repo, default)
    except RepoConfigError as error:
        await say_once(github, repo, pull, trigger, invalid_config(error))
        return
    if config.deploy.production != "on_merge":
        return  # production ships on `/deploy` on the merged PR
    check = await training_check(github, repo, head, gated=has_gates(config))
    if check.failed:
        await say_once(github, repo, pull, trigger, refused_by_gates(check, pull))
        return
    request = DeployRequest(pull, PRODUCTION, merged, default, trigger, check.report_url)
    await request_deploy(github, store, repo, request)


def router_for(deployer: Deployer) -> Router:
    """Return the deploy handlers, bound to the cluster they roll out to."""
    router = Router()

    @router.on(PullRequestEvent, "closed")
    async def on_closed(event: PullRequestEvent, ctx: Context) -> None:
        repo, pull = event.repo, event.pull_request
        if repo is None:
            return
        await tear_down_preview(ctx.github, repo, pull.number, deployer)
        if pull.merged and pull.merge_commit_sha and pull.base.ref == event.default_branch:
            head = pull.head.sha or (await ctx.github.pull_request(repo, pull.number)).head_sha
            await ship_merge(
                ctx.github, ctx.store, repo, pull.number, pull.merge_commit_sha, head, event.default_branch
            )

    @router.on(WorkflowRunEvent, "completed")
    async def on_build_completed(event: WorkflowRunEvent, ctx: Context) -> None:
        run, repo = event.workflow_run, event.repo
        record = await accepted(ctx.store, observed(event), DEPLOY)
        identity = record.deploy if record is not None else None
        if identity is None or repo is None or await already_done(ctx.store, run.id, ROLLED_OUT):
            return  # not orbit's build, or its rollout is done already (a replayed event)
        build = Build(
            repo,
            identity.pull,
            identity.environment,
            identity.deployment_id,
            identity.sha,
            run.id,
            run.conclusion or "failure",
            run.html_url or "",
        )
        await finish_build(ctx.github, deployer, build)
        await done(ctx.store, run.id, ROLLED_OUT)

    return router


@dataclass(frozen=True)
class Build:
    """A completed deploy.yml run."""

    repo: Repo
    pull: int
    environment: str
    deployment_id: int
    sha: str
    run_id: int
    conclusion: str
    url: str  # where its statuses link: the training report when there is one, else the build run
    note: str = ""  # what its statuses add: a forced gate


def _superseded(found: list[DeploymentInfo], build: Build) -> DeploymentInfo | None:
    """Return a newer deployment orbit made of the environment (another workflow's does not count)."""
    newer = [d for d in found if d.id > build.deployment_id and "trigger" in d.payload]
    return newer[0] if newer else None


def _with_request(found: list[DeploymentInfo], build: Build) -> Build:
    """Return the build with what its deployment's payload recorded: the report's link, a forced gate."""
    own = next((d.payload for d in found if d.id == build.deployment_id), {})
    report, note = own.get("report_url"), own.get("note")
    return replace(
        build,
        url=report if isinstance(report, str) and report else build.url,
        note=note if isinstance(note, str) else "",
    )


async def _still_open(github: DeployGitHub, build: Build) -> bool:
    return (await github.pull_request(build.repo, build.pull)).state == "open"


async def finish_build(github: DeployGitHub, deployer: Deployer, build: Build) -> None:
    """Roll out a built image, unless the build failed or a newer deployment of the environment exists.

    Counts and times the deploy (`deploy.metrics`) once its deployment has a final status.
    """
    started = time.monotonic()
    outcome = await _finish(github, deployer, build)
    if outcome is not None:
        record_deploy(build.environment, outcome, time.monotonic() - started)


async def _finish(github: DeployGitHub, deployer: Deployer, build: Build) -> DeployOutcome | None:
    """Do `finish_build`'s work; return the deploy's outcome, or None when it was not a deploy after all."""
    found = await github.deployments(build.repo, build.environment)
    build = _with_request(found, build)
    if newer := _superseded(found, build):
        await github.set_deployment_status(
            build.repo, build.deployment_id, "inactive", f"superseded by deployment {newer.id}"
        )
        return None
    if build.environment != PRODUCTION and not await _still_open(github, build):
        await github.set_deployment_status(
            build.repo, build.deployment_id, "inactive", "the pull request was closed"
        )
        return None  # a preview built after its PR closed is not rolled out
    if build.conclusion != "success":
        reason = f"the image build {build.conclusion.replace('_', ' ')}"
        await _report_failure(github, build, reason, restored=None)
        return "failed"
    try:
        image = await read_image(github, build.repo, build.run_id, deployer.registry)
    except ImageError as error:
        await _report_failure(github, build, str(error), restored=None)
        return "failed"
    await github.set_deployment_status(
        build.repo, build.deployment_id, "in_progress", "rolling out", log_url=build.url
    )
    target = replace(
        deployer.target(build.repo, build.environment, image, build.sha, build.deployment_id),
        pull=build.pull,
    )
    outcome = await roll_out(deployer.cluster, target, deployer.timing)
    if outcome.ok:
        await _report_success(github, build, target)
    else:
        await _report_failure(github, build, outcome.reason, outcome.restored, outcome)
    return outcome_of(outcome.ok, outcome.restored)


async def _report_success(github: DeployGitHub, build: Build, target: Target) -> None:
    serving = f"serving {build.sha[:7]}" + (f", {build.note}" if build.note else "")
    await github.set_deployment_status(
        build.repo, build.deployment_id, "success", serving, url=target.url, log_url=build.url
    )
    where = "Production" if target.production else f"The preview `{target.environment}`"
    body = (
        f"🚀 {where} serves `{build.sha[:7]}` at {target.url}\n\n"
        f"```sh\ncurl -F image=@saturn.png {target.url}/predict\n```"
    )
    await github.create_comment(build.repo, build.pull, body)


async def _report_failure(
    github: DeployGitHub, build: Build, reason: str, restored: bool | None, outcome: Outcome | None = None
) -> None:
    await github.set_deployment_status(build.repo, build.deployment_id, "failure", reason, log_url=build.url)
    production = build.environment == PRODUCTION
    if restored:
        previous = f" (`{outcome.previous_sha[:7]}`)" if outcome and outcome.previous_sha else ""
        still = f"{'production' if production else 'the preview'} still serves the previous model{previous}"
    elif restored is False:
        still = "Warning: the previous model could not be restored either: the environment needs attention"
    else:
        still = "production still serves the previous model" if production else "the preview was not updated"
    failed = f"😕 Deploying `{build.sha[:7]}` to {build.environment} failed: {reason}."
    message = f"{failed} {still[0].upper()}{still[1:]}."
    await github.create_comment(build.repo, build.pull, message)


async def _rollback_deployment(github: DeployGitHub, call: CommandCall, sha: str, to: int) -> int:
    """Return the deployment of this `/rollback`: the one a previous attempt created, else a new one."""
    for existing in await github.deployments(call.repo, PRODUCTION):
        if existing.payload.get("trigger") == call.trigger:
            return existing.id
    payload = {"pr": call.pull, "rollback_to": to, "trigger": call.trigger}
    return await github.create_deployment(call.repo, sha, PRODUCTION, payload, f"roll back PR #{call.pull}")


async def tear_down_preview(github: DeployGitHub, repo: Repo, pull: int, deployer: Deployer) -> None:
    """Delete a closed PR's preview (this repository's only) and mark its deployments inactive."""
    environment = f"pr-{pull}"
    await tear_down(deployer.cluster, deployer.target(repo, environment, "", "", 0))
    for deployment in await github.deployments(repo, environment):
        if await github.deployment_state(repo, deployment.id) != "inactive":
            await github.set_deployment_status(repo, deployment.id, "inactive", "the pull request was closed")


class DeployPreview:
    """The `/deploy` command: an open PR's head to its own preview; a merged PR's merge to production.

    Production is subject to the gates of the merged head's training check; `/deploy --force` by an
    admin ships past a failed gate, and the deployment's statuses say who forced which gate.
    """

    async def __call__(self, ctx: Context, call: CommandCall) -> str:
        """Request the deployment and say so, or say why not."""
        github: DeployGitHub = ctx.github
        try:
            flags, args = flags_of(call.args)
        except UnknownFlag as error:
            return f"{error}; nothing was deployed."
        force = "--force" in flags
        if force and call.permission != ADMIN:
            who = f"@{call.sender} has {call.permission}"
            return f"`/deploy --force` needs admin permission, and {who}; nothing was deployed."
        pull = await github.pull_request(call.repo, call.pull)
        if pull.state == "open":
            return await _preview(ctx, call, pull, args)
        return await _production(ctx, call, pull, force)


async def _preview(ctx: Context, call: CommandCall, pull: PullInfo, args: str) -> str:
    github: DeployGitHub = ctx.github
    refusal = pinning.refusal(pull, args, "deploy")
    if refusal is not None:
        return refusal
    environment = f"pr-{call.pull}"
    check = await training_check(github, call.repo, pull.head_sha)
    request = DeployRequest(
        call.pull, environment, pull.head_sha, pull.default_branch, call.trigger, check.report_url
    )
    await request_deploy(github, ctx.store, call.repo, request)
    return f"Building `{pull.head_sha[:7]}` for the preview `{environment}`, as @{call.sender} asked."


async def _production(ctx: Context, call: CommandCall, pull: PullInfo, force: bool) -> str:
    github: DeployGitHub = ctx.github
    merged = await github.merge_commit(call.repo, call.pull)
    if merged is None or pull.base_ref != pull.default_branch:
        into = f"merged into `{pull.default_branch}`"
        return f"PR #{call.pull} is {pull.state} and not {into}; `/deploy` ships open PRs to a preview."
    try:
        config = await repo_config(github, call.repo, pull.default_branch)
    except RepoConfigError as error:
        return invalid_config(error)
    check = await training_check(github, call.repo, pull.head_sha, gated=has_gates(config))
    if check.failed and not force:
        return refused_by_gates(check, call.pull)
    note = forced_note(check, call.sender) if check.failed else ""
    request = DeployRequest(
        call.pull, PRODUCTION, merged, pull.default_branch, call.trigger, check.report_url, note
    )
    await request_deploy(github, ctx.store, call.repo, request)
    forced = f" ({note})" if note else ""
    return f"Building `{merged[:7]}` for production, as @{call.sender} asked{forced}."


@dataclass(frozen=True)
class Rollback:
    """The `/rollback` command on a merged PR: production goes back to what served before that PR's model.

    The revisions come from the production Deployment of the PR's repository, from its own record
    (Kubernetes holds the truth).
    """

    deployer: Deployer

    async def __call__(self, ctx: Context, call: CommandCall) -> str:
        """Roll production back to the revision before this PR's latest rollout."""
        github: DeployGitHub = ctx.github
        repo, pull_number, sender = call.repo, call.pull, call.sender
        found = await asyncio.to_thread(self.deployer.cluster.read, "Deployment", self.deployer.service(repo))
        history = revisions(found) if found and not serves_another(found, repo.full_name) else ()
        mine = [i for i, revision in enumerate(history) if revision.pull == pull_number]
        if not mine:
            return f"PR #{pull_number} is not among production's recorded rollouts; nothing was rolled back."
        if mine[-1] == 0:
            return f"No rollout before PR #{pull_number}'s is on record; nothing was rolled back."
        back = history[mine[-1] - 1]
        deployment = await _rollback_deployment(github, call, back.sha, back.deployment_id)
        await github.set_deployment_status(repo, deployment, "in_progress", f"rolling back to {back.sha[:7]}")
        target = replace(
            self.deployer.target(repo, PRODUCTION, back.image, back.sha, deployment), pull=back.pull
        )
        started = time.monotonic()
        outcome = await roll_out(self.deployer.cluster, target, self.deployer.timing)
        record_deploy(PRODUCTION, outcome_of(outcome.ok, outcome.restored), time.monotonic() - started)
        if outcome.ok:
            await github.set_deployment_status(
                repo, deployment, "success", f"rolled back to {back.sha[:7]}", url=target.url
            )
            before = f"the model from before PR #{pull_number}"
            return f"Production serves `{back.sha[:7]}` again, {before}, as @{sender} asked."
        build = Build(repo, pull_number, PRODUCTION, deployment, back.sha, 0, "success", "")
        await _report_failure(github, build, outcome.reason, outcome.restored, outcome)
        return f"The rollback to `{back.sha[:7]}` failed: {outcome.reason}."
