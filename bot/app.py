"""Wire the bot together from its settings: database, routers, GitHub client, workers, runners, app."""

import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn, cast

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from bot import commands, installations, logs, redaction
from bot.context import Feature
from bot.github import GitHubAppClient
from bot.inbox import Inbox, health, ingest_health, make_engine
from bot.ingest import Ingest
from bot.ingest_grants import grant_ingest
from bot.ingest_role import IngestInbox, check_own_rights
from bot.redelivery import redeliverer_for
from bot.router import Router
from bot.settings import Settings, SettingsError, load_settings
from bot.web import Periodic, create_app
from bot.worker import STRANDED_EVERY_SECONDS, Retention, WorkerPool, stranded_release
from deploy import flow as deploys
from deploy.kube import KubeModelCluster
from deploy.manifests import service_override_problem
from deploy.previews import EVERY_SECONDS as PREVIEW_EXPIRY_SECONDS
from deploy.previews import PreviewExpiry
from deploy.rollout import Timing
from runner import jobs, training
from runner.classes import GpuNodes, default_classes, repo_limits
from runner.jobs import Runners
from runner.kube import KubeCluster
from runner.reconcile import Reconciler
from runner.report import publish as reports
from runner.sweeps import apply as sweep_apply
from runner.sweeps import command as sweep_command
from runner.sweeps import publish as sweep_publish

ROUTERS = (commands.router, installations.router, training.router, reports.router, sweep_publish.router)
log = logging.getLogger(__name__)


def runners_from(settings: Settings) -> Runners | None:
    """Return the runner machinery, or None when it is disabled or no cluster is configured."""
    if not settings.runners_enabled:
        return None
    try:
        cluster = KubeCluster(settings.kube_namespace)
    except Exception as error:
        log.warning("runner pods are disabled: no Kubernetes configuration (%s)", type(error).__name__)
        return None
    classes = default_classes(
        settings.runner_image,
        settings.gpu_resource,
        settings.max_gpu_runners,
        cpu_image=settings.cpu_runner_image,
        build_namespace=settings.build_namespace,
        build_image=settings.build_runner_image,
        gpu_nodes=GpuNodes(
            settings.gpu_node_selector, tuple(settings.gpu_tolerations), settings.gpu_runtime_class
        ),
        cache_claim=settings.dvc_cache_claim,
    )
    namespaced = {
        k.namespace: KubeCluster(k.namespace, cluster.http.api) for k in classes.values() if k.namespace
    }
    limits = repo_limits(settings)
    return Runners(cluster, classes, settings.runner_group_id or None, namespaced, limits=limits)


def deployer_from(settings: Settings) -> deploys.Deployer | None:
    """Return the model deployer, or None without a registry, a public domain or a cluster.

    Each repository's model gets names of its own; `ORBIT_MODEL_SERVICE` names the objects of a
    single-repository install instead (say, to keep an existing host), and a second repository's
    deploy onto them is refused.
    """
    if not settings.registry or not settings.public_domain:
        return None
    if settings.model_service and (problem := service_override_problem(settings.model_service)):
        raise SettingsError(f"ORBIT_MODEL_SERVICE {problem}")
    try:
        cluster = KubeModelCluster(settings.models_namespace)
    except Exception as error:
        log.warning("deploys are disabled: no Kubernetes configuration (%s)", type(error).__name__)
        return None
    return deploys.Deployer(
        cluster,
        settings.models_namespace,
        settings.model_service,
        settings.registry,
        settings.public_domain,
        settings.tls_issuer or None,
        settings.ingress_class or None,
        Timing(settings.rollout_deadline_seconds),
        settings.image_pull_secret or None,
        settings.model_api_key_secret or None,
    )


def build_app(settings: Settings) -> ASGIApp:
    """Return the ASGI app with its inbox, workers, GitHub client and, when configured, runners."""
    if settings.role == "ingest":
        return ingest_app(settings, ingest_inbox(settings))
    inbox = open_inbox(settings)
    if settings.ingest_database_role and inbox.engine.dialect.name == "postgresql":
        grant_ingest(inbox.engine, settings.ingest_database_role)
    github = github_app(settings)
    runners = runners_from(settings)
    deployer = deployer_from(settings)
    router, features = wiring(runners, deployer)
    workers = WorkerPool(
        inbox,
        router,
        github,
        features=features,
        concurrency=settings.workers,
        max_handler_seconds=settings.max_handler_seconds,
    )
    wake = workers.wake if settings.role == "all" else _no_workers_here
    ingest = Ingest(inbox, router, settings.webhook_secret.get_secret_value().encode(), wake)
    if settings.role == "worker":
        workers.poll_seconds = settings.worker_poll_seconds  # no ingest here to wake it
    retention = Retention(inbox, settings.retention_days)
    periodic = [Periodic("retention", retention.run_once, Retention.EVERY_SECONDS, cut_short=True)]
    if not inbox.writes_locally:  # on PostgreSQL a release may find its key's lock taken
        periodic.append(Periodic("release-stranded", stranded_release(inbox), STRANDED_EVERY_SECONDS))
    if runners:
        reconciler = reconciler_for(settings, inbox, github, runners)
        periodic.append(Periodic("reconcile", reconciler.run_once, settings.reconcile_seconds))
    if deployer:
        expiry = expiry_for(inbox, github, deployer)
        periodic.append(Periodic("preview-expiry", expiry.run_once, PREVIEW_EXPIRY_SECONDS))
    if settings.redeliver_interval_seconds > 0:
        redeliverer = redeliverer_for(settings, inbox)
        periodic.append(Periodic("redeliver", redeliverer.run_once, settings.redeliver_interval_seconds))
    return create_app(
        inbox,
        ingest if settings.role == "all" else None,
        workers,
        settings.webhook_path,
        periodic,
        warmups=warmups(github, runners),
    )


def warmups(github: GitHubAppClient, runners: Runners | None) -> list[Callable[[], Awaitable[None]]]:
    """Return what the workers warm at start-up: GitHub's REST areas, the runners' Kubernetes pools."""
    clusters = (runners.cluster, *runners.namespaced.values()) if runners else ()
    return [github.warm, *(cluster.http.warm for cluster in clusters if isinstance(cluster, KubeCluster))]


def ingest_app(settings: Settings, inbox: Inbox) -> ASGIApp:
    """Return the webhook ingest alone: it verifies and stores, and holds no App key or cluster access.

    It stores every event some feature handles, whether or not runners or deploys are configured:
    that is the workers' configuration, which this process cannot see (a delivery no worker's
    handler wants is finished as handled).
    """
    secret = settings.webhook_secret.get_secret_value().encode()
    return create_app(
        inbox, Ingest(inbox, every_feature(), secret, _no_workers_here), None, settings.webhook_path
    )


def every_feature() -> Router:
    """Return the routes of every feature, runners and deploys included, for their events only.

    Their handlers are bound to nothing: they are for `Router.wants`, never to run.
    """
    runners, deployer = cast(Runners, _NotHere()), cast(deploys.Deployer, _NotHere())
    return wiring(runners, deployer)[0]


class _NotHere:
    """What a process without runners or deploys passes where their handlers would need them."""

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(f"{name}: this process handles no deliveries (ORBIT_ROLE=ingest)")


def _no_workers_here() -> None:
    """Wake no one: the workers run in another process and poll the inbox."""


def expiry_for(inbox: Inbox, github: GitHubAppClient, deployer: deploys.Deployer) -> PreviewExpiry:
    """Return the previews' expiry over the installed repositories recorded in the inbox's database."""
    return PreviewExpiry(deployer, github, lambda: installations.repository_list(inbox.engine))


def wiring(runners: Runners | None, deployer: deploys.Deployer | None) -> tuple[Router, dict[str, Feature]]:
    """Return every feature's handlers as one router, and the commands they serve."""
    routers = [*ROUTERS, jobs.make_router(runners)] if runners else list(ROUTERS)
    features: dict[str, Feature] = {"retrain": sweep_command.Sweep(), "apply": sweep_apply.Apply()}
    if deployer:
        routers.append(deploys.router_for(deployer))
        features.update(deploy=deploys.DeployPreview(), rollback=deploys.Rollback(deployer))
    return Router.compose(routers), features


def github_app(settings: Settings) -> GitHubAppClient:
    """Return the App's GitHub client."""
    return GitHubAppClient(settings.app_id(), settings.private_key(), settings.github_api_url)


def ingest_inbox(settings: Settings) -> Inbox:
    """Return an ingest's inbox; on PostgreSQL the workers create its tables.

    An ingest's role may not create them (ORBIT_INGEST_DATABASE_ROLE), and tables it created would be
    its own: until the workers have run once it is not ready, and a delivery is refused, to come back.
    """
    if make_url(settings.database_url).get_backend_name() != "postgresql":
        return open_inbox(settings, readiness=ingest_health)
    engine = make_engine(settings.database_url)
    check_own_rights(engine)
    return IngestInbox(engine, settings.lease_seconds, settings.max_attempts, readiness=ingest_health)


def open_inbox(settings: Settings, readiness: sa.Table = health) -> Inbox:
    """Return the inbox of the configured database, its tables created."""
    engine = make_engine(settings.database_url)
    inbox = Inbox(engine, settings.lease_seconds, settings.max_attempts, readiness=readiness)
    inbox.create_schema()
    return inbox


def reconciler_for(settings: Settings, inbox: Inbox, github: GitHubAppClient, runners: Runners) -> Reconciler:
    """Return the reconciler over the installed repositories recorded in the inbox's database."""
    return Reconciler(
        runners,
        github,
        lambda: installations.repository_list(inbox.engine),
        inbox,
        settings.pending_limit_seconds,
    )


def app_from_environment() -> ASGIApp:
    """Build the app from `ORBIT_*` variables (the uvicorn factory, in each worker process)."""
    redaction.install()
    settings = load_settings()
    logs.configure(settings.log_format)  # unless `orbit serve` configured it through uvicorn
    return build_app(settings)
