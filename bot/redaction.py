r"""Blank out what looks like a credential: in log lines that leave a job, and in the bot's own logs.

Covered: PEM private keys (multi-line, or on one line with `\n` or URL-encoding), JWTs and other
base64-encoded JSON such as a runner's JIT config (`eyJ...`), GitHub tokens (`ghp_`, `gho_`,
`ghu_`, `ghs_`, `ghr_`, `github_pat_`, `v1.` installation tokens), Slack tokens and webhooks, AWS
access key ids, `ACTIONS_RUNNER_INPUT_JITCONFIG` and `--jitconfig` values, `Authorization` headers,
`Bearer` tokens, passwords in URLs, `...SECRET...=value`-style assignments (`AWS_SECRET_ACCESS_KEY`)
and lines that are one long base64 blob (a key's body). A line that is URL-encoded is also read
decoded, and redacted decoded if that reveals a credential.

`install()` makes every log record of the process redacted when it is created (a log record
factory), whatever its logger or handler; `RedactingFilter` does the same as a `logging.Filter` for
a handler set up elsewhere.
"""

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

MASK = "***"
PEM_SEARCH = 20_000  # characters after a BEGIN marker in which its END is looked for
_SPACE = r"(?:[ +]|%20)"
_PEM_BEGIN = re.compile(
    rf"-----BEGIN{_SPACE}(?:[A-Z0-9]+{_SPACE})*PRIVATE{_SPACE}KEY(?:-----|%2D%2D%2D%2D%2D)"
)
_PEM_END = re.compile(rf"(?:-----|%2D%2D%2D%2D%2D)END{_SPACE}(?:[A-Z0-9]+{_SPACE})*PRIVATE{_SPACE}KEY-----")
_PEM_BODY_LINE = re.compile(r"[ \t]*(?:[A-Za-z0-9+/=]+|(?:Proc-Type|DEK-Info|Comment):.*)?[ \t]*")
_B64 = r"(?:[A-Za-z0-9+/=_-]|%[0-9A-Fa-f]{2})"
_SECRET_WORDS = (  # the names of secrets, to find their values
    r"secret|token|password|passwd|passphrase|pwd|api_?key|apikey|access_?key|private_?key"  # noqa: S105
    r"|credentials?|auth_?key|client_?secret|session_?key"
)
_CLASSES = (re.compile("[A-Z]"), re.compile("[a-z]"), re.compile("[0-9]"))
_KEEP = re.compile(r"(?i)\*+|-?\d+(?:\.\d+)?|true|false|null|none|\$\{?\{?.*")


def _mask_all(_: re.Match[str]) -> str:
    return MASK


def _mask_group(group: int | str) -> Callable[[re.Match[str]], str]:
    def mask(match: re.Match[str]) -> str:
        start, end = match.span(group)
        return match.string[match.start() : start] + MASK + match.string[end : match.end()]

    return mask


def _mask_value(match: re.Match[str]) -> str:
    """Mask an assignment's value, unless it plainly is no secret (a number, a flag, a reference)."""
    value = match.group("value")
    if len(value) < 6 or value.startswith(MASK) or _KEEP.fullmatch(value):
        return match.group(0)
    return _mask_group("value")(match)


def _has_classes(match: re.Match[str]) -> str:
    """Mask a line that is one base64 blob with upper and lower case and digits (not a hex digest)."""
    blob = match.group("blob")
    if all(kind.search(blob) for kind in _CLASSES):
        return match.group(0).replace(blob, MASK)
    return match.group(0)


LINE_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    # JWTs, and base64 of JSON such as a JIT runner config: `{"` encodes as eyI, eyJ, eyK or eyL
    (re.compile(rf"ey[IJKL](?:{_B64}|\.){{20,}}"), _mask_all),
    (re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), _mask_all),
    (re.compile(r"(?<![A-Za-z0-9])v1\.[0-9a-f]{40}(?![0-9a-f])"), _mask_all),
    (re.compile(r"(?:xox[abeprs]|xapp)-[A-Za-z0-9-]{10,}"), _mask_all),
    (re.compile(r"hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]+"), _mask_all),
    (
        re.compile(
            r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|AKPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}(?![A-Z0-9])"
        ),
        _mask_all,
    ),
    (
        re.compile(rf"(?i)jit_?config[\"']?(?:\s*(?:[:=]|%3A|%3D)\s*|\s+)[\"']?(?P<value>{_B64}{{8,}})"),
        _mask_group("value"),
    ),
    (
        re.compile(
            r"(?im)\b(?:proxy-)?(?:authorization|x-api-key|private-token)[\"']?\s*[:=]\s*(?P<value>\S.*)$"
        ),
        _mask_group("value"),
    ),
    (re.compile(r"://[^/\s:@]+:(?P<value>[^@\s/]+)@"), _mask_group("value")),
    (re.compile(r"(?i)\bbearer\s+(?P<value>[A-Za-z0-9._~+/=-]{12,})"), _mask_group("value")),
    (
        re.compile(
            rf"(?i)(?:{_SECRET_WORDS})(?![a-z])[A-Za-z0-9_.-]{{0,64}}[\"']?"
            r"(?:\s*(?:[:=]|%3A|%3D)\s*)[\"']?(?P<value>[^\s'\"&,;<>]+)"
        ),
        _mask_value,
    ),
    (re.compile(r"(?m)^[ \t]*(?P<blob>[A-Za-z0-9+/]{40,}={0,2})[ \t]*$"), _has_classes),
)


def _pem(text: str) -> str:
    """Mask the body of every PEM private key: up to its END marker, or its last base64 line."""
    out, position = [], 0
    while (begin := _PEM_BEGIN.search(text, position)) is not None:
        out.append(text[position : begin.end()])
        end = _PEM_END.search(text, begin.end(), begin.end() + PEM_SEARCH)
        if end is not None:
            out.append(re.sub(r"\S+", MASK, text[begin.end() : end.start()]))
            position = end.start()
            continue
        stop = text.find("\n", begin.end())  # no END: the rest of the line, then lines like a key's
        stop = len(text) if stop < 0 else stop
        while stop < len(text):
            following = text.find("\n", stop + 1)
            following = len(text) if following < 0 else following
            if not _PEM_BODY_LINE.fullmatch(text, stop + 1, following):
                break
            stop = following
        out.append(re.sub(r"\S+", MASK, text[begin.end() : stop]))
        position = stop
    out.append(text[position:])
    return "".join(out)


def _line(line: str) -> str:
    for pattern, replace in LINE_PATTERNS:
        line = pattern.sub(replace, line)
    return line


def redact_line(line: str) -> str:
    """Return one line with every credential-looking value replaced by `***` (a key on one line too)."""
    line = _line(_pem(line))
    if "%" in line:  # URL-encoded: read it decoded, and keep that form if it hid a credential
        decoded = unquote(unquote(line))
        if decoded != line and (cleaned := _line(_pem(decoded))) != decoded:
            return cleaned
    return line


def redact(text: str) -> str:
    """Return text (one line or many) with every credential-looking value replaced by `***`."""
    return "\n".join(redact_line(line) for line in _pem(text).split("\n"))  # _pem again: idempotent


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a log record in place: its message, exception and stack text.

    A record whose message holds no credential keeps its format and arguments (a formatter may
    read them); one that does gets the redacted message, without arguments.
    """
    try:
        message = record.getMessage()
    except (TypeError, ValueError, KeyError):  # a bad format: logging reports it, with these redacted
        record.msg = redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_arg(value) for value in record.args)
    else:
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def _arg(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record passing through (it never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record; keep it."""
        scrub(record)
        return True


_installed: list[Callable[..., logging.LogRecord]] = []


def install() -> None:
    """Redact every log record of this process as it is created; calling it again changes nothing."""
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub(previous(*args, **kwargs))

    _installed.append(previous)
    logging.setLogRecordFactory(factory)


def uninstall() -> None:
    """Restore the log record factory `install` replaced (for tests)."""
    if _installed:
        logging.setLogRecordFactory(_installed.pop())
