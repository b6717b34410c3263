"""Logging: one JSON object a line (or plain text for humans), each carrying what it is about.

A record carries `delivery_id`, `repository`, `pull` and `run_id` when the code that logs it knows
them: the worker binds the first three around a delivery's handlers (`delivery_scope`), and a
handler that learns a run's id adds it (`bind(run_id=...)`). They live in a context variable, so
each asyncio task (each delivery) and each thread it starts sees only its own. Every value that
leaves a record is redacted (`bot.redaction`), extra fields and tracebacks too.
"""

import contextlib
import logging
import logging.config
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import IO, Any, Literal

from pythonjsonlogger.json import JsonFormatter

from bot.delivery import Delivery
from bot.events import subject
from bot.redaction import redact

FIELDS = ("delivery_id", "repository", "pull", "run_id")
HANDLER = "orbit"  # the name of the root handler `config` installs
Value = str | int
_EMPTY: Mapping[str, Value] = MappingProxyType({})
_bound: ContextVar[Mapping[str, Value]] = ContextVar("orbit_log_fields", default=_EMPTY)


def bound() -> Mapping[str, Value]:
    """Return the fields bound in the current context."""
    return _bound.get()


def bind(**fields: Value | None) -> None:
    """Add fields (`run_id=...`) to every record logged from here on in the current context.

    Inside a delivery's handler that is until the handler returns; a None value is left out.
    """
    known = {name: value for name, value in fields.items() if value is not None}
    unknown = set(known) - set(FIELDS)
    if unknown:
        raise ValueError(f"not a log field: {', '.join(sorted(unknown))}")
    _bound.set(MappingProxyType({**_bound.get(), **known}))


@contextlib.contextmanager
def scope(**fields: Value | None) -> Iterator[None]:
    """Bind fields for the block only; what was bound before is back after it, whatever it bound."""
    token = _bound.set(_bound.get())  # undone at the end, with whatever the block bound after it
    try:
        bind(**fields)
        yield
    finally:
        _bound.reset(token)


def delivery_fields(delivery: Delivery) -> dict[str, Value | None]:
    """Return the delivery's id and the repository and pull request it names (read leniently)."""
    repo, pull = subject(delivery)
    return {"delivery_id": delivery.delivery_id, "repository": repo.full_name if repo else None, "pull": pull}


def delivery_scope(delivery: Delivery) -> contextlib.AbstractContextManager[None]:
    """Bind the delivery's fields while its handlers run (what they bind ends with them)."""
    return scope(**delivery_fields(delivery))


class ContextFilter(logging.Filter):
    """Copy the bound fields onto each record that passes (it never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields bound where the record was logged."""
        for name, value in bound().items():
            setattr(record, name, value)
        return True


class RedactedJsonFormatter(JsonFormatter):
    """JSON lines whose every string value is redacted: message, extras and traceback alike."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Redact each value before it is serialised."""
        return {key: _redacted(value) for key, value in log_data.items()}


class TextFormatter(logging.Formatter):
    """Plain lines for humans, the bound fields appended as `name=value`."""

    def format(self, record: logging.LogRecord) -> str:
        """Format the record, then add its fields."""
        fields = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS if hasattr(record, name))
        line = super().format(record)
        return redact(f"{line} [{fields}]" if fields else line)


def _redacted(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    return value


def formatter(log_format: Literal["json", "text"]) -> logging.Formatter:
    """Return the formatter of a format: JSON objects, or text lines."""
    if log_format == "json":
        return RedactedJsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # ISO 8601, in UTC
        )
    return TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def handler(log_format: Literal["json", "text"], stream: IO[str] | None = None) -> logging.Handler:
    """Return the handler that writes records to `stream` (stderr) with their bound fields."""
    out = logging.StreamHandler(stream)
    out.setFormatter(formatter(log_format))
    out.addFilter(ContextFilter())
    return out


def config(log_format: Literal["json", "text"], level: str = "INFO") -> dict[str, Any]:
    """Return the `logging.config.dictConfig` of the process: one handler on the root logger.

    uvicorn takes it as its `log_config`: its own loggers propagate to that handler, and the
    access log (one line a webhook) stays off.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {HANDLER: {"()": handler, "log_format": log_format}},
        "root": {"handlers": [HANDLER], "level": level.upper()},
        "loggers": {
            # A level of their own: what an earlier uvicorn in the process set must not hide them.
            "uvicorn": {"handlers": [], "propagate": True, "level": level.upper()},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level.upper()},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def configure(log_format: Literal["json", "text"], level: str = "INFO") -> None:
    """Configure logging once; a process whose root logger has orbit's handler already is left as is.

    `orbit serve` configures it through uvicorn (with its `--log-level`); the app factory then
    changes nothing, and configures it itself only when uvicorn was started some other way.
    """
    if any(handler.name == HANDLER for handler in logging.getLogger().handlers):
        return
    logging.config.dictConfig(config(log_format, level))
