"""What the training flow asks of GitHub: a few areas of the client, by step."""

from typing import Protocol

from bot.github.actions import Artifacts, Jobs, Workflows
from bot.github.checks import CheckDetails, Checks
from bot.github.git import GitData
from bot.github.issues import Conversation
from bot.github.pulls import Pulls
from bot.github.runners import SelfHostedRunners


class TrainingGitHub(Pulls, Checks, CheckDetails, Conversation, Workflows, Protocol):
    """Deciding to train and dispatching train.yml: the PR, its check run, the workflow's runs."""


class RunnerGitHub(Checks, Jobs, SelfHostedRunners, Protocol):
    """Runner pods: the job they serve, its just-in-time runner, the check run they report on."""


class ReportGitHub(Conversation, Checks, Workflows, Jobs, Artifacts, GitData, Protocol):
    """Publishing a run's report: its artifact or its log, the plots' branch, the comment and the check."""
