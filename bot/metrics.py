"""Prometheus metrics of the bot, served on `GET /metrics`.

Label values come only from fixed sets: a request can add a time series only by being an event
GitHub defines, after its signature checked (`event_label`); anything else counts under one value.
"""

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
