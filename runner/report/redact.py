"""Blank out what looks like a credential before log lines leave the job or reach a comment."""

import re

PATTERNS = (
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),  # GitHub tokens
    re.compile(r"\b((?:AKIA|ASIA)[A-Z0-9]{16})\b"),  # AWS access key ids
    re.compile(r"(?i)\b(?:authorization|x-api-key)\s*[:=]\s*(\S.*)$"),
    re.compile(
        r"(?i)\b[\w-]*(?:secret|token|password|passwd|api_key|apikey)[\w-]*\s*[:=]\s*['\"]?([^\s'\"]+)"
    ),
    re.compile(r"://[^/\s:@]+:([^@\s/]+)@"),  # passwords in URLs
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*)"),
)
MASK = "***"


def redact(line: str) -> str:
    """Return the line with every credential-looking value replaced by ***."""
    for pattern in PATTERNS:
        line = pattern.sub(lambda m: m.group(0).replace(m.group(1), MASK) if m.group(1) else m.group(0), line)
    return line


def tail(text: str, lines: int) -> list[str]:
    """Return the last non-empty lines of a log, redacted."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return [redact(line) for line in kept[-lines:]]
