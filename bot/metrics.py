"""Prometheus metrics of the bot, served on `GET /metrics`.

Label values come only from fixed sets: a request can add a time series only by being an event
GitHub defines, after its signature checked (`event_label`); anything else counts under one value.
"""

from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "orbit_deliveries_total",
    "Webhook deliveries by event, action and outcome",
    ["event", "action", "outcome"],
)
ACK_LATENCY = Histogram(
    "orbit_ack_latency_seconds",
    "Time from request to acknowledgement",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
INBOX_DEPTH = Gauge("orbit_inbox_depth", "Work items by status", ["status"])
WORK_ATTEMPTS = Counter("orbit_work_attempts_total", "Work item attempts by outcome", ["outcome"])
GITHUB_CALLS = Counter("orbit_github_calls_total", "GitHub API calls by call and status", ["call", "status"])
INBOX_OLDEST_PENDING = Gauge(
    "orbit_inbox_oldest_pending_seconds",
    "How long the oldest runnable pending work item has waited for a worker (0 when none waits)",
)
DEAD_LETTERS = Counter("orbit_dead_letters_total", "Work items dead-lettered, by reason", ["reason"])
# Why the inbox gives up on an item: each is a fixed value, never an error's text.
LEASE_EXPIRED = "lease_expired"  # its lease lapsed `max_attempts` times: workers died or hung on it
ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # it failed for now `max_attempts` times
PERMANENT_ERROR = "permanent_error"  # its handler said it can never succeed
UNREADABLE_PAYLOAD = "unreadable_payload"  # its stored payload cannot be decoded
DEAD_LETTER_REASONS = (LEASE_EXPIRED, ATTEMPTS_EXHAUSTED, PERMANENT_ERROR, UNREADABLE_PAYLOAD)
for _reason in DEAD_LETTER_REASONS:  # each series exists from the start, at 0: alerts see the first one
    DEAD_LETTERS.labels(_reason)
RUN_DURATION = Histogram(
    "orbit_run_duration_seconds",
    "Duration of the workflow runs orbit dispatched, by kind (training, deploy) and conclusion",
    ["kind", "conclusion"],
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600),
)
RUN_KINDS = frozenset({"training", "deploy"})
RUN_CONCLUSIONS = frozenset({"success", "failure", "cancelled"})  # any other counts as "other"

UNVERIFIED = "unverified"  # the event label of a request whose signature did not check (or was not read)
OTHER = "other"  # the event label of a signed delivery of an event GitHub does not define
# The `X-GitHub-Event` values GitHub defines (webhook events of repositories, organisations and Apps).
KNOWN_EVENTS = frozenset(
    {
        "branch_protection_configuration",
        "branch_protection_rule",
        "cache_sync",
        "check_run",
        "check_suite",
        "code_scanning_alert",
        "commit_comment",
        "content_reference",
        "create",
        "custom_property",
        "custom_property_values",
        "delete",
        "dependabot_alert",
        "deploy_key",
        "deployment",
        "deployment_protection_rule",
        "deployment_review",
        "deployment_status",
        "discussion",
        "discussion_comment",
        "enterprise",
        "fork",
        "github_app_authorization",
        "gollum",
        "installation",
        "installation_repositories",
        "installation_target",
        "issue_comment",
        "issue_dependencies",
        "issues",
        "label",
        "marketplace_purchase",
        "member",
        "membership",
        "merge_group",
        "meta",
        "milestone",
        "org_block",
        "organization",
        "package",
        "page_build",
        "personal_access_token_request",
        "ping",
        "project",
        "project_card",
        "project_column",
        "projects_v2",
        "projects_v2_item",
        "projects_v2_status_update",
        "public",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "push",
        "registry_package",
        "release",
        "repository",
        "repository_advisory",
        "repository_dispatch",
        "repository_import",
        "repository_ruleset",
        "repository_vulnerability_alert",
        "secret_scanning_alert",
        "secret_scanning_alert_location",
        "secret_scanning_scan",
        "security_advisory",
        "security_and_analysis",
        "sponsorship",
        "star",
        "status",
        "sub_issues",
        "team",
        "team_add",
        "user",
        "watch",
        "workflow_dispatch",
        "workflow_job",
        "workflow_run",
    }
)
MAX_ACTION_LABEL = 40  # GitHub's longest action names are about 30 characters


def event_label(event: str) -> str:
    """Return the label of a verified delivery's event: its name when GitHub defines it, else "other"."""
    return event if event in KNOWN_EVENTS else OTHER


def observe_run(kind: str, conclusion: str, started_at: str | None, ended_at: str | None) -> float | None:
    """Observe a finished run's duration from GitHub's ISO 8601 times; return it (None when unknown).

    Both flows call it (the training flow for train.yml, the deploy flow for deploy.yml): the run
    contract is the core's (`bot.runs`), and so is the histogram.
    """
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    seconds = seconds_between(started_at, ended_at)
    if seconds is not None:
        label = conclusion if conclusion in RUN_CONCLUSIONS else OTHER
        RUN_DURATION.labels(kind, label).observe(seconds)
    return seconds


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Return the seconds from one ISO 8601 time to a later one; None when either is missing or bad."""
    try:
        began, ended = _instant(start), _instant(end)
    except ValueError:
        return None
    if began is None or ended is None or ended < began:
        return None
    return (ended - began).total_seconds()


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)  # Python 3.11 reads GitHub's trailing Z
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
