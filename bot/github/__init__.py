"""The GitHub client of the App framework, one module per area of the REST API.

`calls` runs one request and translates its failure (temporary or permanent); each area module
(`issues`, `pulls`, `checks`, `actions`, `runners`, `git`, `deployments`) holds its small Protocol,
its value types and their githubkit implementation; `client` composes them per installation.
"""

from bot.github.actions import ArtifactInfo, JobInfo, RunInfo, RunStatus, StepInfo, named_artifact
from bot.github.calls import Conflict, NotFound, Unprocessable
from bot.github.checks import CheckUpdate
from bot.github.client import GitHubApi, GitHubApp, GitHubAppClient, InstallationClient
from bot.github.deployments import PRODUCTION, DeploymentInfo, DeploymentState
from bot.github.git import TreeEntry
from bot.github.issues import WRITE_PERMISSIONS, CommentInfo, Reaction
from bot.github.pulls import PullInfo

__all__ = [
    "PRODUCTION",
    "WRITE_PERMISSIONS",
    "ArtifactInfo",
    "CheckUpdate",
    "CommentInfo",
    "Conflict",
    "DeploymentInfo",
    "DeploymentState",
    "GitHubApi",
    "GitHubApp",
    "GitHubAppClient",
    "InstallationClient",
    "JobInfo",
    "NotFound",
    "PullInfo",
    "Reaction",
    "RunInfo",
    "RunStatus",
    "StepInfo",
    "TreeEntry",
    "Unprocessable",
    "named_artifact",
]
