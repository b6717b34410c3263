"""Ephemeral runners: a pod per queued orbit job, gone when the job completes."""

import asyncio
import logging
from dataclasses import dataclass

from bot.context import Context
from bot.dispatch import accepted_job
from bot.errors import PermanentError
from bot.events import Repo, WorkflowJobEvent
from bot.github import CheckUpdate, JobInfo
from bot.router import Router
from bot.runs import RecordedRun
from runner import checks
from runner.classes import RunnerClass, class_for
from runner.github import RunnerGitHub
from runner.kube import Cluster
from runner.podspec import RunnerJob, pod_manifest, runner_name, secret_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runners:
    """Starts and stops runner pods for one cluster and its runner classes."""

    cluster: Cluster
    classes: dict[str, RunnerClass]

    async def start(
        self, github: RunnerGitHub, repo: Repo, job: JobInfo, run: RecordedRun, installation: int
    ) -> bool:
        """Start a runner for a still-queued job of an orbit run; return whether a new pod was created."""
        klass = class_for(job.labels, self.classes)
        if klass is None or job.status != "queued":
            return False
        pods = await asyncio.to_thread(self.cluster.class_pods, klass.label)
        return await self._start_in_class(github, repo, job, run, klass, pods, installation)

    async def start_if_queued(
        self, github: RunnerGitHub, repo: Repo, job: JobInfo, run: RecordedRun, installation: int
    ) -> bool:
        """Start a runner for a job an event names, once the API says it is still queued.

        The event may be stale; the API's answer and the class's pods are asked for at once.
        """
        klass = class_for(job.labels, self.classes)
        if klass is None:
            return False
        current, pods = await asyncio.gather(
            github.workflow_job(repo, job.id), asyncio.to_thread(self.cluster.class_pods, klass.label)
        )
        if current is None or current.status != "queued" or class_for(current.labels, self.classes) != klass:
            return False
        return await self._start_in_class(github, repo, current, run, klass, pods, installation)

    async def _start_in_class(
        self,
        github: RunnerGitHub,
        repo: Repo,
        job: JobInfo,
        run: RecordedRun,
        klass: RunnerClass,
        pods: list[dict[str, str]],
        installation: int,
    ) -> bool:
        if any(labels.get("orbit.dev/job") == str(job.id) for labels in pods):
            return False  # a redelivery: the pod exists
        if len(pods) >= klass.max_pods:
            log.info("class %s is at its cap; job %s waits for the reconciler", klass.label, job.id)
            return False
        target = RunnerJob(repo.full_name, job.id, job.run_id, run.pull, tuple(job.labels))
        await self._create(github, repo, target, klass, installation)
        return True

    async def _create(
        self, github: RunnerGitHub, repo: Repo, job: RunnerJob, klass: RunnerClass, installation: int
    ) -> None:
        name = runner_name(job.job_id)
        runner_id, jit_config = await github.generate_jit_config(
            repo, name, list(job.labels), klass.runner_group_id
        )
        manifest = pod_manifest(job, klass, installation)

        def create_pod_and_secret() -> None:  # one trip to a thread for both calls
            uid, _ = self.cluster.create_pod(manifest)
            self.cluster.create_secret(secret_manifest(job, klass, jit_config, uid))

        try:
            await asyncio.to_thread(create_pod_and_secret)
        except Exception:
            await github.delete_runner(repo, runner_id)  # a registered runner with no pod would be an orphan
            await asyncio.to_thread(self.cluster.delete_runner, name)
            raise

    async def stop(self, github: RunnerGitHub, repo: Repo, job_id: int) -> None:
        """Delete the job's pod and secret and unregister its runner if it is still registered."""
        name = runner_name(job_id)
        await asyncio.to_thread(self.cluster.delete_runner, name)
        runner_id = await github.find_runner(repo, name)
        if runner_id is not None:
            await github.delete_runner(repo, runner_id)


def job_info(event: WorkflowJobEvent) -> JobInfo:
    """Return what runners need of the event's job."""
    job = event.workflow_job
    return JobInfo(
        id=job.id,
        run_id=job.run_id,
        status=job.status,
        labels=list(job.labels),
        head_sha=job.head_sha or "",
        html_url=job.html_url or "",
        runner_name=job.runner_name or "",
        created_at=job.created_at or "",
        name=job.name or "",
    )


def make_router(runners: Runners) -> Router:
    """Return the router of workflow_job events for these runners."""
    router = Router()

    @router.on(WorkflowJobEvent, "queued")
    async def queued(event: WorkflowJobEvent, ctx: Context) -> None:
        repo, job = event.repo, job_info(event)
        if repo is None or event.installation is None or class_for(job.labels, runners.classes) is None:
            return
        run = await accepted_job(ctx.store, repo.full_name, job.run_id, job.head_sha)
        if run is not None:
            await runners.start_if_queued(ctx.github, repo, job, run, event.installation.id)

    @router.on(WorkflowJobEvent, "in_progress")
    async def in_progress(event: WorkflowJobEvent, ctx: Context) -> None:
        repo, job = event.repo, job_info(event)
        if repo is None or class_for(job.labels, runners.classes) is None:
            return
        run = await accepted_job(ctx.store, repo.full_name, job.run_id, job.head_sha)
        training = run.training if run is not None else None
        if training is None:
            return  # not orbit's, or a deploy build: no check run to show it on
        summary = (
            f"Running on `{job.runner_name or runner_name(job.id)}`. [Follow the job's log]({job.html_url})."
        )
        update = CheckUpdate(
            status="in_progress", title="Training", summary=summary, details_url=job.html_url or None
        )
        await checks.update_open(ctx.github, repo, training.sha, update)

    @router.on(WorkflowJobEvent, "completed")
    async def completed(event: WorkflowJobEvent, ctx: Context) -> None:
        repo, job = event.repo, job_info(event)
        if repo is None or class_for(job.labels, runners.classes) is None:
            return
        try:
            await runners.stop(ctx.github, repo, job.id)
        except PermanentError:
            log.warning("could not unregister the runner of job %s", job.id)

    return router
