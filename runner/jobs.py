"""Ephemeral runners: a pod per queued orbit job, gone when the job completes."""

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bot import logs
from bot.context import Context
from bot.dispatch import accepted_job
from bot.errors import PermanentError
from bot.events import Repo, WorkflowJobEvent
from bot.github import CheckUpdate, JobInfo
from bot.github.calls import Conflict
from bot.github.checks import Annotation
from bot.github.pulls import Pulls
from bot.repo_config import CONFIG_PATH, RepoConfig, RepoConfigError, RunnerSpec, parse_config
from bot.router import Router
from bot.runs import RecordedRun
from runner import checks, metrics
from runner.classes import RepoLimits, RunnerClass, Tailored, class_for, tailor
from runner.github import RunnerGitHub
from runner.kube import ClassPods, Cluster, Place, RunnerPod
from runner.podspec import GPUS_LABEL, RunnerJob, pod_manifest, runner_name, secret_manifest
from runner.podspec import labels as pod_labels
from runner.report import inert

log = logging.getLogger(__name__)
T = TypeVar("T")
CONFIG_TTL_S = 300.0


class ConfiguredRunnerGitHub(RunnerGitHub, Pulls, Protocol):
    """Runner pods sized by the repository: `.github/orbit.yml` read at the commit a run runs."""


@dataclass
class RepoConfigs:
    """Each run's `.github/orbit.yml`, kept briefly, so that a run's three jobs read it once.

    Read at the run's own commit: the default branch's, which it was dispatched from, never a PR's.
    Jobs that arrive together (a matrix, a burst) wait for the one read already under way.
    """

    ttl_s: float = CONFIG_TTL_S
    clock: Callable[[], float] = time.monotonic
    entries: dict[tuple[str, str], tuple[float, RepoConfig | None, str]] = field(default_factory=dict)
    reading: dict[tuple[str, str], asyncio.Future[tuple[RepoConfig | None, str]]] = field(
        default_factory=dict
    )

    async def read(self, github: Pulls, repo: Repo, sha: str) -> tuple[RepoConfig | None, str]:
        """Return the config at the commit (None when invalid) and why it is invalid ("" when valid)."""
        key = (repo.full_name, sha)
        cached = self.entries.get(key)
        if cached is not None and self.clock() - cached[0] < self.ttl_s:
            return cached[1], cached[2]
        under_way = self.reading.get(key)
        if under_way is None:
            under_way = asyncio.ensure_future(self._fetch(github, repo, sha))
            self.reading[key] = under_way
            under_way.add_done_callback(lambda done: _forget(self.reading, key, done))
        # One caller cancelled (its handler timed out) leaves the read to the others.
        return await asyncio.shield(under_way)

    async def _fetch(self, github: Pulls, repo: Repo, sha: str) -> tuple[RepoConfig | None, str]:
        try:
            config, problem = parse_config(await github.file_text(repo, CONFIG_PATH, sha)), ""
        except RepoConfigError as error:
            config, problem = None, str(error)
        now = self.clock()
        self.entries = {k: v for k, v in self.entries.items() if now - v[0] < self.ttl_s}
        self.entries[(repo.full_name, sha)] = (now, config, problem)
        return config, problem

    async def spec(
        self, github: Pulls, repo: Repo, run: RecordedRun, label: str
    ) -> tuple[RunnerSpec | None, str]:
        """Return the run's workflow's spec for a runner class, and a note when the config is invalid."""
        config, problem = await self.read(github, repo, run.head_sha)
        if config is None:
            return None, f"the installation's default runners are used, for {problem}"
        workflow = run.workflow.rsplit("/", 1)[-1]
        return config.runners.get(workflow, {}).get(label), ""


def _forget(
    reading: dict[tuple[str, str], asyncio.Future[T]], key: tuple[str, str], done: asyncio.Future[T]
) -> None:
    """Drop a finished read; its failure was its callers' to see (retrieved here when none waited)."""
    if reading.get(key) is done:
        del reading[key]
    if not done.cancelled():
        done.exception()


@dataclass(frozen=True)
class Runners:
    """Starts and stops runner pods for one cluster and its runner classes."""

    cluster: Cluster
    classes: dict[str, RunnerClass]
    runner_group_id: int | None = None  # an organisation runner group; None: runners on the repository
    namespaced: Mapping[str, Cluster] = field(default_factory=dict)  # a class's own namespace: its pods
    limits: RepoLimits = field(default_factory=RepoLimits)  # what a repository may ask of a class
    configs: RepoConfigs = field(default_factory=RepoConfigs)
    pods: ClassPods = field(default_factory=ClassPods)  # each class's pods, for its cap

    def cluster_for(self, klass: RunnerClass) -> Cluster:
        """Return the cluster (namespace) the class's pods run in."""
        return self.namespaced.get(klass.namespace, self.cluster) if klass.namespace else self.cluster

    def cluster_of(self, pod: RunnerPod) -> Cluster:
        """Return the cluster (namespace) a listed pod is in."""
        return self.namespaced.get(pod.namespace, self.cluster)

    def runner_pods(self) -> list[RunnerPod]:
        """Return the runner pods of every namespace runners run in."""
        return [pod for cluster in (self.cluster, *self.namespaced.values()) for pod in cluster.runner_pods()]

    def delete_runner(self, name: str) -> None:
        """Delete a runner's pod and secret wherever its class put them (missing ones count as deleted)."""
        for cluster in (self.cluster, *self.namespaced.values()):
            cluster.delete_runner(name)

    async def start(
        self, github: ConfiguredRunnerGitHub, repo: Repo, job: JobInfo, run: RecordedRun, installation: int
    ) -> bool:
        """Start a runner for a still-queued job of an orbit run; return whether a new pod was created."""
        klass = class_for(job.labels, self.classes)
        if klass is None or job.status != "queued":
            return False
        since = self.pods.clock()
        tailored = await self._tailored(github, repo, run, klass)
        return await self._start_in_class(github, repo, job, run, klass, tailored, installation, since)

    async def start_if_queued(
        self, github: ConfiguredRunnerGitHub, repo: Repo, job: JobInfo, run: RecordedRun, installation: int
    ) -> bool:
        """Start a runner for a job an event names, once the API says it is still queued.

        The event may be stale. Whether the job is still queued, the run's runner sizes and the
        class's pods are asked for at once: none depends on another.
        """
        klass = class_for(job.labels, self.classes)
        if klass is None:
            return False
        since = self.pods.clock()
        current, tailored, _ = await asyncio.gather(
            github.workflow_job(repo, job.id),
            self._tailored(github, repo, run, klass),
            self.pods.warm(self.cluster_for(klass), klass.label, since),
        )
        if current is None or current.status != "queued" or class_for(current.labels, self.classes) != klass:
            return False
        return await self._start_in_class(github, repo, current, run, klass, tailored, installation, since)

    async def _start_in_class(
        self,
        github: ConfiguredRunnerGitHub,
        repo: Repo,
        job: JobInfo,
        run: RecordedRun,
        klass: RunnerClass,
        tailored: Tailored,
        installation: int,
        since: float,
    ) -> bool:
        target = RunnerJob(repo.full_name, job.id, job.run_id, run.pull, tuple(job.labels))
        place = await self.pods.reserve(
            self.cluster_for(klass),
            klass.label,
            job.id,
            pod_labels(target, tailored.klass),
            lambda pods: _at_cap(klass, tailored.klass, pods),
            since,
        )
        if place is Place.FULL:
            log.info("class %s is at its cap; job %s waits for the reconciler", klass.label, job.id)
        if place is not Place.RESERVED:
            return False  # at the cap, or a redelivery: the pod exists
        try:
            new = await self._create(github, repo, target, tailored.klass, installation)
        except BaseException:
            self.pods.release(klass.label, job.id)
            raise
        self.pods.created(klass.label, job.id)
        if new and tailored.notes:
            await _show_notes(github, repo, run, klass, tailored.notes)
        return new

    async def _tailored(
        self, github: ConfiguredRunnerGitHub, repo: Repo, run: RecordedRun, klass: RunnerClass
    ) -> Tailored:
        """Return the class as the run's `.github/orbit.yml` sizes it, within the installation's limits."""
        spec, problem = await self.configs.spec(github, repo, run, klass.label)
        tailored = tailor(klass, spec, self.limits)
        return Tailored(tailored.klass, (problem, *tailored.notes) if problem else tailored.notes)

    async def _create(
        self,
        github: ConfiguredRunnerGitHub,
        repo: Repo,
        job: RunnerJob,
        klass: RunnerClass,
        installation: int,
    ) -> bool:
        """Create the pod and register its runner at once, then the secret; return whether the pod is new.

        The pod needs nothing of the registration (it reads the JIT config from the secret, which it
        waits for), so the two go together; the secret needs both. Whatever a failure leaves is undone:
        a registered runner with no pod would be an orphan, a pod with no runner would wait forever.
        """
        name = runner_name(job.job_id)
        cluster = self.cluster_for(klass)
        pod_outcome, runner_outcome = await asyncio.gather(
            cluster.create_pod(pod_manifest(job, klass, installation)),
            github.generate_jit_config(repo, name, list(job.labels), self.runner_group_id),
            return_exceptions=True,
        )
        pod, runner = _settled(pod_outcome), _settled(runner_outcome)
        if isinstance(runner, Conflict) and not isinstance(pod, Exception) and pod[1]:
            runner = await self._register_again(github, repo, job, name)
        if isinstance(pod, Exception) or not pod[1]:
            # no pod, or another delivery's: this registration is not needed
            if not isinstance(runner, Exception):
                await github.delete_runner(repo, runner[0], self.in_organization)
            if isinstance(pod, Exception):
                await asyncio.to_thread(cluster.delete_runner, name)  # it may exist though the create failed
                raise pod
            return False
        if isinstance(runner, Exception):
            await asyncio.to_thread(cluster.delete_runner, name)
            raise runner
        runner_id, jit_config = runner
        try:
            await cluster.create_secret(secret_manifest(job, klass, jit_config, pod[0]))
        except Exception:
            await github.delete_runner(repo, runner_id, self.in_organization)
            await asyncio.to_thread(cluster.delete_runner, name)
            raise
        return True

    async def _register_again(
        self, github: ConfiguredRunnerGitHub, repo: Repo, job: RunnerJob, name: str
    ) -> tuple[int, str] | Exception:
        """Register the runner of a pod this process created, though its name was taken.

        The pod's create decides whose the job is: the registration under its name is another
        process's, which lost the pod and is removing it, or one whose answer was lost. It goes.
        """
        try:
            taken = await github.find_runner(repo, name, self.in_organization)
            if taken is not None:
                await github.delete_runner(repo, taken, self.in_organization)
            return await github.generate_jit_config(repo, name, list(job.labels), self.runner_group_id)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            return error

    async def stop(self, github: ConfiguredRunnerGitHub, repo: Repo, job_id: int) -> None:
        """Delete the job's pod and secret and unregister its runner if it is still registered."""
        name = runner_name(job_id)
        await asyncio.to_thread(self.delete_runner, name)
        self.pods.forget(job_id)
        runner_id = await github.find_runner(repo, name, self.in_organization)
        if runner_id is not None:
            await github.delete_runner(repo, runner_id, self.in_organization)

    @property
    def in_organization(self) -> bool:
        """Return whether runners are registered in an organisation runner group."""
        return self.runner_group_id is not None


def _settled(outcome: T | BaseException) -> T | Exception:
    """Return a gathered call's result or error; re-raise a cancellation (the inbox runs it again)."""
    if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
        raise outcome
    return outcome


def _at_cap(klass: RunnerClass, asked: RunnerClass, pods: list[dict[str, str]]) -> bool:
    """Return whether another pod would pass the class's cap: of pods, and for a GPU class of GPUs."""
    if len(pods) >= klass.max_pods:
        return True
    if not klass.gpus:
        return False
    held = sum(_gpus(labels, klass.gpus) for labels in pods)
    return held + asked.gpus > klass.max_pods


def _gpus(labels: dict[str, str], default: int) -> int:
    value = labels.get(GPUS_LABEL, "")
    return int(value) if value.isdigit() else default


async def _show_notes(
    github: ConfiguredRunnerGitHub, repo: Repo, run: RecordedRun, klass: RunnerClass, notes: tuple[str, ...]
) -> None:
    """Say on the run's check run what of the repository's runner sizes was clamped or ignored.

    In the summary while the job waits, and as warnings on `.github/orbit.yml`, which stay when later
    updates replace the summary.
    """
    log.info("runner class %s of %s adjusted: %s", klass.label, repo.full_name, "; ".join(notes))
    training = run.training
    if training is None:
        return  # a deploy build has no check run to show it on
    shown = [inert.text(note, limit=400) for note in notes]
    listed = "\n".join(f"- {note}" for note in shown)
    summary = (
        f"The `{klass.label}` runner was started with these changes to what `{CONFIG_PATH}` asks:\n\n{listed}"
    )
    warnings = tuple(
        Annotation(CONFIG_PATH, 1, note, level="warning", title=f"{klass.label} runner adjusted")
        for note in shown
    )
    update = CheckUpdate(
        title="Runner adjusted to this installation's limits", summary=summary, annotations=warnings
    )
    await checks.update_open(github, repo, training.sha, update)


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
        logs.bind(run_id=job.run_id)
        if repo is None or event.installation is None or class_for(job.labels, runners.classes) is None:
            return
        run = await accepted_job(ctx.store, repo.full_name, job.run_id, job.head_sha)
        if run is not None:
            await runners.start_if_queued(ctx.github, repo, job, run, event.installation.id)

    @router.on(WorkflowJobEvent, "in_progress")
    async def in_progress(event: WorkflowJobEvent, ctx: Context) -> None:
        repo, job = event.repo, job_info(event)
        klass = class_for(job.labels, runners.classes)
        logs.bind(run_id=job.run_id)
        if repo is None or klass is None:
            return
        run = await accepted_job(ctx.store, repo.full_name, job.run_id, job.head_sha)
        if run is None:
            return  # not orbit's
        training = run.training
        if training is not None:  # a deploy build has no check run to show it on
            summary = (
                f"Running on `{job.runner_name or runner_name(job.id)}`. "
                f"[Follow the job's log]({job.html_url})."
            )
            update = CheckUpdate(
                status="in_progress", title="Training", summary=summary, details_url=job.html_url or None
            )
            await checks.update_open(ctx.github, repo, training.sha, update)
        # Last: a failure above is retried by the inbox, and the wait is still observed only once.
        metrics.observe_queue(klass.label, event.workflow_job)

    @router.on(WorkflowJobEvent, "completed")
    async def completed(event: WorkflowJobEvent, ctx: Context) -> None:
        repo, job = event.repo, job_info(event)
        logs.bind(run_id=job.run_id)
        if repo is None or class_for(job.labels, runners.classes) is None:
            return
        try:
            await runners.stop(ctx.github, repo, job.id)
        except PermanentError:
            log.warning("could not unregister the runner of job %s", job.id)

    return router
