"""The GitHub client of the App framework, one module per area of the REST API.

`calls` runs one request and translates its failure (temporary or permanent); each area module
(`issues`, `pulls`, `checks`, `actions`, `runners`, `git`, `deployments`) holds its small Protocol,
its value types and their githubkit implementation; `client` composes them per installation.
`direct` sends a runner's two calls per queued job (the job read, the runner registration) straight on
`transport`'s pool with githubkit's token, past githubkit's per-request cost. `hooks` acts as the App
itself (not an installation): its webhook deliveries, and redelivery.
"""

from bot.github.actions import (
    MAX_ARTIFACT_BYTES,
    MAX_LOG_TAIL_BYTES,
    ArtifactInfo,
    ArtifactTooLarge,
    JobInfo,
    RunInfo,
    RunStatus,
    StepInfo,
    named_artifact,
)
from bot.github.calls import Conflict, NotFound, Unprocessable
from bot.github.checks import CheckUpdate
from bot.github.client import GitHubApi, GitHubApp, GitHubAppClient, InstallationClient
from bot.github.deployments import PRODUCTION, DeploymentInfo, DeploymentState
from bot.github.git import TreeEntry
from bot.github.hooks import AppHooks, AppHooksClient, DeliveryAttempt, DeliveryRequest, app_hooks
from bot.github.issues import WRITE_PERMISSIONS, CommentInfo, Reaction, ReactionInfo
from bot.github.pulls import PullInfo

__all__ = [
    "MAX_ARTIFACT_BYTES",
    "MAX_LOG_TAIL_BYTES",
    "PRODUCTION",
    "WRITE_PERMISSIONS",
    "AppHooks",
    "AppHooksClient",
    "ArtifactInfo",
    "ArtifactTooLarge",
    "CheckUpdate",
    "CommentInfo",
    "Conflict",
    "DeliveryAttempt",
    "DeliveryRequest",
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
    "ReactionInfo",
    "RunInfo",
    "RunStatus",
    "StepInfo",
    "TreeEntry",
    "Unprocessable",
    "app_hooks",
    "named_artifact",
]
