"""What a handler gets besides its delivery: GitHub as the installation, and the features."""

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.engine import Engine

from bot.github import GitHubApi
from bot.payloads import Repo


class Feature(Protocol):
    """A command's back end (training, deployment), plugged in by its own module."""

    async def __call__(self, github: GitHubApi, repo: Repo, pull_number: int, sender: str, args: str) -> str:
        """Start the work and return a one-line outcome for the PR."""
        ...


@dataclass(frozen=True)
class Context:
    """The I/O edges a handler may use."""

    github: GitHubApi
    engine: Engine
    features: dict[str, Feature]
