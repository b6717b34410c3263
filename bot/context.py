"""What a handler gets besides its delivery: GitHub as the installation, and the features."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy.engine import Connection

from bot.events import Repo
from bot.github import GitHubApi


class Feature(Protocol):
    """A command's back end (training, deployment), plugged in by its own module."""

    async def __call__(self, github: GitHubApi, repo: Repo, pull_number: int, sender: str, args: str) -> str:
        """Start the work and return a one-line outcome for the PR."""
        ...


T = TypeVar("T")


class Store(Protocol):
    """The bot's database, written only through the inbox's one writer (SQLite has one at a time)."""

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a write transaction, after the writers before it, and return its result."""
        ...


@dataclass(frozen=True)
class Context:
    """The I/O edges a handler may use."""

    github: GitHubApi
    store: Store
    features: dict[str, Feature]
