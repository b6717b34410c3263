"""The report of a run that failed before it built its own: the failing step and the end of its log.

Both come from the Actions API; anything credential-like in the log is blanked out.
"""

import re

from bot.events import Repo
from bot.github import JobInfo
from runner.github import ReportGitHub
from runner.report.redact import tail
from runner.report.text import log_block

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
    if conclusion == "cancelled":
        return f"### ⏹ Training of `{sha[:7]}` was cancelled\n\n[The workflow run]({url}) did not finish."
    jobs = [
        job for job in await github.run_jobs(repo, run_id) if job.conclusion not in ("success", "skipped", "")
    ]
    if not jobs:
        return f"### ❌ Training of `{sha[:7]}` ended: {conclusion}\n\nSee [the workflow run]({url})."
    job = jobs[0]
    lines = log_tail(await github.job_log(repo, job.id))
    block = log_block(lines)
    return (
        f"### ❌ Training of `{sha[:7]}` failed at step “{failed_step(job)}”\n\n"
        f"The end of [its log]({job.html_url or url}):\n\n{block}"
    )
