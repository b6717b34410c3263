"""What the GitHub App must be granted: the permissions and events of `.github/app.yml`.

The installed bot has no checkout of this repository, so `orbit doctor` compares the App that GitHub
knows with these constants; a test keeps `.github/app.yml` saying the same.
"""

from collections.abc import Iterable, Mapping

PERMISSIONS: Mapping[str, str] = {
    "actions": "write",
    "administration": "write",
    "organization_self_hosted_runners": "write",
    "checks": "write",
    "contents": "write",
    "deployments": "write",
    "issues": "write",
    "pull_requests": "write",
    "metadata": "read",
}
EVENTS: tuple[str, ...] = (
    "installation_target",
    "issue_comment",
    "pull_request",
    "workflow_job",
    "workflow_run",
)
LEVELS = ("read", "write", "admin")  # each grants what the ones before it do


def missing_permissions(granted: Mapping[str, str]) -> dict[str, str]:
    """Return each permission orbit needs that `granted` lacks or holds at a lower level."""
    missing = {}
    for name, needed in PERMISSIONS.items():
        level = granted.get(name, "")
        if level not in LEVELS or LEVELS.index(level) < LEVELS.index(needed):
            missing[name] = needed
    return missing


def missing_events(subscribed: Iterable[str]) -> list[str]:
    """Return the events orbit needs that are not in `subscribed`."""
    have = set(subscribed)
    return [event for event in EVENTS if event not in have]
