"""The reconciler: makes the pods match the jobs after lost webhooks, crashes and stuck pods.

- a queued orbit job with no pod gets one (oldest first, within each class's cap);
- a pod whose job completed, was cancelled or is unknown is deleted with its secret;
- a pod Pending longer than the limit is reported on the check run with the reason from its events;
- a pod past its deadline is deleted and the check run fails with that reason.
"""

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.context import Store
from bot.dispatch import accepted_job
from bot.errors import PermanentError, TemporaryError
from bot.events import Repo
from bot.github import CheckUpdate, GitHubApi, GitHubApp, JobInfo
from bot.runs import DEPLOY_WORKFLOW, TRAIN_WORKFLOW, RecordedRun, recorded
from runner import checks, metrics
from runner.jobs import Runners
from runner.kube import RunnerPod

log = logging.getLogger(__name__)
WORKFLOWS = (TRAIN_WORKFLOW, DEPLOY_WORKFLOW)


@dataclass
class Outcome:
    """What one pass did, for logs and tests."""

    started: list[int] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    reported_pending: list[str] = field(default_factory=list)
    deadline_exceeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # pods and repositories a GitHub error left as they were


@dataclass
class Reconciler:
    """One pass over every runner pod and every installed repository's queued jobs."""

    runners: Runners
    app: GitHubApp
    repositories: Callable[[], list[tuple[int, str]]]
    store: Store
    pending_limit_s: float = 600.0
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def run_once(self) -> Outcome:
        """Reconcile once; a failure on one pod or repository does not stop the others."""
        outcome = Outcome()
        pods = await asyncio.to_thread(self.runners.runner_pods)
        metrics.publish_pods(pods, self.runners.classes)
        for pod in pods:
            try:
                await self._check_pod(pod, outcome)
            except (TemporaryError, PermanentError) as error:
                log.warning("reconciling pod %s: %s", pod.name, error)
                outcome.failed.append(pod.name)
        await self._start_lost_jobs(outcome)
        return outcome

    async def _check_pod(self, pod: RunnerPod, outcome: Outcome) -> None:
        repo_name = pod.annotations.get("orbit.dev/repository", "")
        install, job_id = (
            pod.annotations.get("orbit.dev/installation", ""),
            pod.labels.get("orbit.dev/job", ""),
        )
        if "/" not in repo_name or not install.isdigit() or not job_id.isdigit():
            await asyncio.to_thread(self.runners.cluster_of(pod).delete_runner, pod.name)  # not ours to keep
            outcome.deleted.append(pod.name)
            return
        repo, github = Repo(*repo_name.split("/", 1)), self.app.for_installation(int(install))
        job = await github.workflow_job(repo, int(job_id))
        if pod.reason == "DeadlineExceeded":
            await self.runners.stop(github, repo, int(job_id))
            outcome.deadline_exceeded.append(pod.name)
            if job is not None:
                update = CheckUpdate(
                    conclusion="failure",
                    title="Runner deadline exceeded",
                    summary="The runner pod ran past its deadline and was stopped.",
                )
                await self._update_check(github, repo, job, update)
        elif (
            job is None
            or job.status == "completed"
            or pod.phase in ("Succeeded", "Failed")
            or _lost_secret(pod)
        ):
            await self.runners.stop(github, repo, int(job_id))
            outcome.deleted.append(pod.name)
        elif pod.phase == "Pending" and self._age(pod) > self.pending_limit_s:
            await self._report_pending(github, repo, job, pod)
            outcome.reported_pending.append(pod.name)

    def _age(self, pod: RunnerPod) -> float:
        return (self.now() - pod.created).total_seconds() if pod.created else 0.0

    async def _report_pending(self, github: GitHubApi, repo: Repo, job: JobInfo, pod: RunnerPod) -> None:
        events = await asyncio.to_thread(self.runners.cluster_of(pod).pod_events, pod.name)
        reason = pod.waiting_reason or (events[-1] if events else "no reason given by Kubernetes")
        summary = (
            f"The runner pod `{pod.name}` has been Pending for {self._age(pod) / 60:.0f} minutes:"
            f" {reason}\n\n"
            "It starts as soon as the cluster has capacity (a free GPU, a pullable image)."
        )
        await self._update_check(
            github, repo, job, CheckUpdate(title="Waiting for a GPU runner", summary=summary)
        )

    async def _update_check(self, github: GitHubApi, repo: Repo, job: JobInfo, update: CheckUpdate) -> None:
        """Update the check run of the commit the job's run trains (a deploy build has none)."""
        found = await asyncio.to_thread(self.store.read, functools.partial(recorded, run_id=job.run_id))
        training = found.training if found is not None else None
        if training is not None:
            await checks.update_open(github, repo, training.sha, update)

    async def _start_lost_jobs(self, outcome: Outcome) -> None:
        candidates: list[tuple[JobInfo, RecordedRun, GitHubApi, Repo, int]] = []
        for install, full_name in self.repositories():
            repo, github = Repo(*full_name.split("/", 1)), self.app.for_installation(install)
            try:
                candidates += [
                    (*found, github, repo, install) for found in await self._queued_jobs(github, repo)
                ]
            except (TemporaryError, PermanentError) as error:
                log.warning("listing queued jobs of %s: %s", full_name, error)
                outcome.failed.append(full_name)
        for job, run, github, repo, install in sorted(
            candidates, key=lambda c: c[0].created_at
        ):  # oldest first
            try:
                if await self.runners.start(github, repo, job, run, install):
                    outcome.started.append(job.id)
            except (TemporaryError, PermanentError) as error:  # one job's failure stops no other's start
                log.warning("starting a runner for job %s of %s: %s", job.id, repo.full_name, error)
                outcome.failed.append(f"{repo.full_name} job {job.id}")

    async def _queued_jobs(self, github: GitHubApi, repo: Repo) -> list[tuple[JobInfo, RecordedRun]]:
        """Return the queued jobs of the runs orbit dispatched (a job of any other run gets no pod)."""
        jobs = []
        for workflow in WORKFLOWS:
            for status in ("queued", "in_progress"):
                for run in await github.workflow_runs(repo, workflow, status):
                    record = await accepted_job(self.store, repo.full_name, run.id, run.head_sha)
                    if record is not None:
                        jobs += [
                            (job, record)
                            for job in await github.run_jobs(repo, run.id)
                            if job.status == "queued"
                        ]
        return jobs


def _lost_secret(pod: RunnerPod) -> bool:
    """Return whether the pod waits for a secret that will never come (the bot died between the two).

    Deleting it lets the next pass start the still-queued job afresh, with a new JIT config.
    """
    return pod.waiting_reason == "CreateContainerConfigError"
