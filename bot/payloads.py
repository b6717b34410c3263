"""Lenient reads of webhook payloads: only the fields a handler needs, `None` when absent."""

import re
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.delivery import Delivery

T = TypeVar("T")
RUN_TITLE_PR = re.compile(r"^orbit/\w+ PR #(?P<number>\d+)\b")
PRODUCTION_RUN = re.compile(r"^orbit/deploy PR #\d+ to production\b")


def dig(payload: Any, *path: str, kind: type[T]) -> T | None:
    """Follow `path` through nested objects; return the value if it has type `kind`, else None."""
    value = payload
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if kind is int and isinstance(value, bool):
        return None
    return value if isinstance(value, kind) else None


@dataclass(frozen=True)
class Repo:
    """A repository as `owner/name`."""

    owner: str
    name: str

    @property
    def full_name(self) -> str:
        """Return `owner/name`."""
        return f"{self.owner}/{self.name}"


def repository(delivery: Delivery) -> Repo | None:
    """Return the delivery's repository, if it names one."""
    full_name = dig(delivery.payload, "repository", "full_name", kind=str)
    if full_name is None or "/" not in full_name:
        return None
    owner, name = full_name.split("/", 1)
    return Repo(owner, name)


def installation_id(delivery: Delivery) -> int | None:
    """Return the id of the App installation the delivery is for."""
    return dig(delivery.payload, "installation", "id", kind=int)


def pull_number(delivery: Delivery) -> int | None:
    """Return the pull request (or PR-backed issue) the delivery is about, if any."""
    number = dig(delivery.payload, "pull_request", "number", kind=int)
    if number is None and dig(delivery.payload, "issue", "pull_request", kind=dict) is not None:
        number = dig(delivery.payload, "issue", "number", kind=int)
    title = dig(delivery.payload, "workflow_run", "display_title", kind=str)
    if number is None and title and (match := RUN_TITLE_PR.match(title)):
        number = int(match["number"])  # orbit's own runs name their PR
    return number


def ordering_key(delivery: Delivery) -> str:
    """Return the key whose work items must run in order: one pull request, else the delivery alone."""
    repo, number = repository(delivery), pull_number(delivery)
    title = dig(delivery.payload, "workflow_run", "display_title", kind=str) or ""
    if repo is not None and PRODUCTION_RUN.match(title):
        return f"{repo.full_name}@production"  # production's rollouts, one at a time whatever their PR
    if repo is not None and number is not None:
        return f"{repo.full_name}#{number}"
    return f"delivery:{delivery.delivery_id}"
