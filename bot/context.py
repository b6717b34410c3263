"""What a handler gets besides its delivery: GitHub as the installation, and the features."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy.engine import Connection

from bot.events import Repo
from bot.github import GitHubApi


@dataclass(frozen=True)
class CommandCall:
    """One slash command in a pull request comment, by a user allowed to run it."""

    repo: Repo
    pull: int
    sender: str
    args: str
    comment_id: int  # the comment's id: what makes a redelivered comment the same command
    permission: str = "write"  # the sender's permission, as the API answered it ("admin", "write", ...)

    @property
    def trigger(self) -> str:
        """Return what identifies this command's work, so that a redelivery starts nothing new."""
        return f"comment:{self.comment_id}"


class Feature(Protocol):
    """A command's back end (training, deployment), plugged in by its own module."""

    async def __call__(self, ctx: "Context", call: CommandCall) -> str:
        """Start the work and return a one-line outcome for the PR."""
        ...


T = TypeVar("T")


class Store(Protocol):
    """The bot's database, written only through the inbox's one writer (SQLite has one at a time)."""

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a write transaction, after the writers before it, and return its result."""
        ...

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a connection that only reads, beside the writers, and return its result."""
        ...


@dataclass(frozen=True)
class Context:
    """The I/O edges a handler may use."""

    github: GitHubApi
    store: Store
    features: dict[str, Feature]
