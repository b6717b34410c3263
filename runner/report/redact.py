"""Blank out what looks like a credential before log lines leave the job or reach a comment.

The patterns are the bot's own (`bot.redaction`, which also redacts the bot's logs). A log is
redacted as a whole before its tail is taken, so a private key whose BEGIN line falls before the
tail still has its body lines blanked out.
"""

from bot.redaction import MASK, redact_line
from bot.redaction import redact as redact_text

__all__ = ["CONTEXT_LINES", "LINE_LIMIT", "MASK", "redact", "redact_lines", "tail"]
CONTEXT_LINES = 256  # lines before the tail read with it: a PEM key's BEGIN and body
LINE_LIMIT = 2_000  # characters of a line kept: a report shows fewer, and a secret that starts
# within what is shown is still whole when it is redacted


def redact(line: str) -> str:
    """Return the line with every credential-looking value replaced by ***."""
    return redact_line(line)


def redact_lines(lines: list[str]) -> list[str]:
    """Return lines redacted together (a key spans several); a line holding a line break becomes two."""
    text = "\n".join(lines).replace("\r\n", "\n").replace("\r", "\n")
    return redact_text(text).split("\n") if lines else []


def tail(text: str, lines: int) -> list[str]:
    """Return the last non-empty lines of a log, redacted together with the lines before them."""
    kept = [line.rstrip()[:LINE_LIMIT] for line in text.splitlines() if line.strip()]
    window = kept[-(lines + CONTEXT_LINES) :] if lines > 0 else []
    return redact_lines(window)[-lines:] if lines > 0 else []
