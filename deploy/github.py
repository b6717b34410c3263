"""What the shipping flow asks of GitHub: deployments and their statuses, the build run, the PR."""

from typing import Protocol

from bot.github.actions import Artifacts, Workflows
from bot.github.deployments import Deployments
from bot.github.issues import Conversation
from bot.github.pulls import Pulls


class DeployGitHub(Deployments, Workflows, Artifacts, Pulls, Conversation, Protocol):
    """Deployments and statuses; deploy.yml's dispatch and its image artifact; the PR and its comments."""
