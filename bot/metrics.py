"""Prometheus metrics of the bot, served on `GET /metrics`."""

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
