"""The report of a run that failed before it built its own: the failing step and the end of its log.

Both come from the Actions API; anything credential-like in the log is blanked out, and the log
lines (written by a pull request's code) go into a code block that none of them can close.
"""

import re

from bot.events import Repo
from bot.github import JobInfo
from runner.github import ReportGitHub
from runner.report import inert
from runner.report.redact import tail

TAIL_LINES = 30
TIMESTAMP = re.compile(r"^\ufeff?\d{4}-\d\d-\d\dT[\d:.]+Z ")


def failed_step(job: JobInfo) -> str:
    """Return the name of the job's first failed step, or the job's name."""
    step = next((s for s in job.steps if s.conclusion == "failure"), None)
    return step.name if step else job.name or f"job {job.id}"


def log_tail(log: str) -> list[str]:
    """Return the lines before the log's last error (post-job cleanup comes after it), redacted."""
    lines = [TIMESTAMP.sub("", line) for line in log.splitlines()]
    errors = [i for i, line in enumerate(lines) if line.startswith("##[error]")]
    end = errors[-1] + 1 if errors else len(lines)
    return tail("\n".join(lines[:end]), TAIL_LINES)


async def failure_markdown(
    github: ReportGitHub, repo: Repo, run_id: int, sha: str, conclusion: str, url: str
) -> str:
    """Return the failure report of a run whose bundle is missing."""
    commit = inert.code(sha[:7])
    if conclusion == "cancelled":
        return f"### Training of {commit} was cancelled\n\n[The workflow run]({url}) did not finish."
    jobs = [
        job for job in await github.run_jobs(repo, run_id) if job.conclusion not in ("success", "skipped", "")
    ]
    if not jobs:
        return f"### Training of {commit} ended: {inert.text(conclusion)}\n\nSee [the workflow run]({url})."
    job = jobs[0]
    lines = log_tail(await github.job_log(repo, job.id))
    block = inert.fence(lines)
    return (
        f"### Training of {commit} failed at step “{inert.text(failed_step(job))}”\n\n"
        f"The end of [its log]({job.html_url or url}):\n\n{block}"
    )
