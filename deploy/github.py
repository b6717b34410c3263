"""What the shipping flow asks of GitHub: deployments and their statuses, the build run, the PR."""

from typing import Protocol

from bot.github.actions import Artifacts, Workflows
from bot.github.checks import CheckDetails
from bot.github.deployments import Deployments, Merges
from bot.github.issues import Conversation
from bot.github.pulls import Pulls


class DeployGitHub(Deployments, Merges, Workflows, Artifacts, Pulls, Conversation, CheckDetails, Protocol):
    """Deployments, deploy.yml's dispatch and image, the PR and its comments, the gates' check run."""
