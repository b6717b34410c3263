"""The events orbit handles, each read once into a lenient typed model of just the fields it reads.

Real payloads vary (GitHub Enterprise versions, old deliveries, new fields): unknown fields are
ignored, absent optional ones take their default, and `null` is accepted wherever GitHub sends it.
A payload that lacks what a handler needs is not an error: `read` answers None and says why.
"""

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import msgspec

from bot.delivery import Delivery
from bot.runs import production_run, run_pull

log = logging.getLogger(__name__)
E = TypeVar("E", bound="Event")


@dataclass(frozen=True)
class Repo:
    """A repository as `owner/name`."""

    owner: str
    name: str

    @property
    def full_name(self) -> str:
        """Return `owner/name`."""
        return f"{self.owner}/{self.name}"

    @classmethod
    def parse(cls, full_name: str) -> "Repo | None":
        """Return the repository of an `owner/name`, or None when it is not one."""
        owner, _, name = full_name.partition("/")
        return cls(owner, name) if owner and name else None


class Model(msgspec.Struct, frozen=True, kw_only=True):
    """A part of a payload: unknown fields are ignored."""


class Account(Model, frozen=True, kw_only=True):
    """A user, bot or organisation."""

    login: str = ""
    type: str = ""


class Repository(Model, frozen=True, kw_only=True):
    """A repository as payloads describe it."""

    full_name: str
    default_branch: str | None = None
    html_url: str | None = None

    @property
    def repo(self) -> Repo | None:
        """Return the repository, when its name is `owner/name`."""
        return Repo.parse(self.full_name)


class Installation(Model, frozen=True, kw_only=True):
    """The App's installation a delivery is for."""

    id: int
    account: Account | None = None


class Event(Model, frozen=True, kw_only=True):
    """What every event orbit handles may carry; `name` is the `X-GitHub-Event` header."""

    name: ClassVar[str] = ""
    action: str = ""
    repository: Repository | None = None
    installation: Installation | None = None

    @property
    def repo(self) -> Repo | None:
        """Return the event's repository, if it names one."""
        return self.repository.repo if self.repository else None

    @property
    def default_branch(self) -> str:
        """Return the repository's default branch (`main` when the payload does not say)."""
        return (self.repository.default_branch if self.repository else None) or "main"


class GitRef(Model, frozen=True, kw_only=True):
    """A pull request's head or base."""

    ref: str = ""
    sha: str = ""
    repo: Repository | None = None  # null when a fork was deleted


class PullRequest(Model, frozen=True, kw_only=True):
    """A pull request as payloads describe it."""

    number: int
    state: str = "open"
    draft: bool | None = False
    merged: bool | None = False
    merge_commit_sha: str | None = None
    head: GitRef = msgspec.field(default_factory=GitRef)
    base: GitRef = msgspec.field(default_factory=GitRef)


class PullRequestEvent(Event, frozen=True, kw_only=True):
    """`pull_request`: opened, synchronize, closed, ..."""

    name: ClassVar[str] = "pull_request"
    pull_request: PullRequest
    before: str | None = None  # synchronize: the head before the push


class Issue(Model, frozen=True, kw_only=True):
    """The issue a comment is on; a pull request's conversation is an issue with `pull_request`."""

    number: int
    pull_request: dict[str, Any] | None = None


class Comment(Model, frozen=True, kw_only=True):
    """A comment on an issue or pull request."""

    id: int
    body: str | None = ""
    user: Account


class IssueCommentEvent(Event, frozen=True, kw_only=True):
    """`issue_comment`: a comment created, edited or deleted."""

    name: ClassVar[str] = "issue_comment"
    issue: Issue
    comment: Comment


class WorkflowRun(Model, frozen=True, kw_only=True):
    """A workflow run as payloads describe it."""

    id: int
    display_title: str | None = None
    conclusion: str | None = None
    html_url: str | None = None
    path: str | None = None
    event: str | None = None
    head_sha: str | None = None
    head_repository: Repository | None = None
    run_started_at: str | None = None  # GitHub's clock, as the payload gives it
    updated_at: str | None = None


class WorkflowRunEvent(Event, frozen=True, kw_only=True):
    """`workflow_run`: requested, in_progress, completed."""

    name: ClassVar[str] = "workflow_run"
    workflow_run: WorkflowRun


class WorkflowJob(Model, frozen=True, kw_only=True):
    """A workflow job as payloads describe it."""

    id: int
    run_id: int
    status: str = ""
    labels: list[str] = []
    head_sha: str | None = None
    html_url: str | None = None
    runner_name: str | None = None
    created_at: str | None = None
    started_at: str | None = None  # when a runner took the job, GitHub's clock
    name: str | None = None


class WorkflowJobEvent(Event, frozen=True, kw_only=True):
    """`workflow_job`: queued, in_progress, completed, waiting."""

    name: ClassVar[str] = "workflow_job"
    workflow_job: WorkflowJob


class RepositoryName(Model, frozen=True, kw_only=True):
    """A repository as installation events list it."""

    full_name: str


class InstallationEvent(Event, frozen=True, kw_only=True):
    """`installation`: created, deleted, suspend, unsuspend, new_permissions_accepted."""

    name: ClassVar[str] = "installation"
    installation: Installation
    repositories: list[RepositoryName] | None = None


class InstallationRepositoriesEvent(Event, frozen=True, kw_only=True):
    """`installation_repositories`: repositories added to or removed from an installation."""

    name: ClassVar[str] = "installation_repositories"
    installation: Installation
    repositories_added: list[RepositoryName] = []
    repositories_removed: list[RepositoryName] = []


def read(delivery: Delivery, kind: type[E]) -> E | None:
    """Return the delivery as `kind`, or None (logged with the reason) when it lacks a needed field."""
    try:
        return msgspec.convert(delivery.payload, kind)
    except msgspec.ValidationError as error:
        log.warning("delivery %s is not a usable %s event: %s", delivery.delivery_id, kind.name, error)
        return None


class _Numbered(Model, frozen=True, kw_only=True):
    number: int | None = None
    pull_request: dict[str, Any] | None = None


class _Titled(Model, frozen=True, kw_only=True):
    display_title: str | None = None


class _Named(Model, frozen=True, kw_only=True):
    full_name: str | None = None


class _Routing(Model, frozen=True, kw_only=True):
    """The few fields that order a delivery, all optional: ingest keeps only these (`ROUTING_FIELDS`)."""

    repository: _Named | None = None
    pull_request: _Numbered | None = None
    issue: _Numbered | None = None
    workflow_run: _Titled | None = None


def _routing(delivery: Delivery) -> _Routing:
    try:
        return msgspec.convert(delivery.payload, _Routing)
    except msgspec.ValidationError:
        return _Routing()


def installation_id(delivery: Delivery) -> int | None:
    """Return the id of the App installation the delivery is for."""
    installation = delivery.payload.get("installation")
    value = installation.get("id") if isinstance(installation, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pull_of(routing: _Routing) -> int | None:
    """Return the pull request (or PR-backed issue, or orbit run of a PR) the routing fields name."""
    if routing.pull_request is not None and routing.pull_request.number is not None:
        return routing.pull_request.number
    if routing.issue is not None and routing.issue.pull_request is not None:
        return routing.issue.number
    if routing.workflow_run is not None:
        return run_pull(routing.workflow_run.display_title or "")
    return None


def subject(delivery: Delivery) -> tuple[Repo | None, int | None]:
    """Return the repository and the pull request a delivery is about, each when it names one."""
    routing = _routing(delivery)
    repo = Repo.parse(routing.repository.full_name or "") if routing.repository else None
    return repo, _pull_of(routing)


def ordering_key(delivery: Delivery) -> str:
    """Return the key whose work items must run in order: one pull request, else the delivery alone."""
    routing = _routing(delivery)
    repo = Repo.parse(routing.repository.full_name or "") if routing.repository else None
    title = (routing.workflow_run.display_title if routing.workflow_run else None) or ""
    if repo is not None and production_run(title):
        return f"{repo.full_name}@production"  # production's rollouts, one at a time whatever their PR
    number = _pull_of(routing)  # the fields decoded once: this runs for every delivery at ingest
    if repo is not None and number is not None:
        return f"{repo.full_name}#{number}"
    return f"delivery:{delivery.delivery_id}"
