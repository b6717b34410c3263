"""Wire the bot together from its settings: database, routers, GitHub client, workers, runners, app."""

import logging

from starlette.types import ASGIApp

from bot import commands, installations, redaction
from bot.context import Feature
from bot.github import GitHubAppClient
from bot.inbox import Inbox, make_engine
from bot.ingest import Ingest
from bot.router import Router
from bot.settings import Settings, load_settings
from bot.web import Periodic, create_app
from bot.worker import WorkerPool
from deploy import flow as deploys
from deploy.kube import KubeModelCluster
from deploy.manifests import SERVICE
from deploy.rollout import Timing
from runner import jobs, training
from runner.classes import default_classes
from runner.jobs import Runners
from runner.kube import KubeCluster
from runner.reconcile import Reconciler
from runner.report import publish as reports

ROUTERS = (commands.router, installations.router, training.router, reports.router)
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
    return Runners(
        cluster, default_classes(settings.runner_image, settings.gpu_resource, settings.max_gpu_runners)
    )


def deployer_from(settings: Settings) -> deploys.Deployer | None:
    """Return the model deployer, or None without a registry, a public domain or a cluster."""
    if not settings.registry or not settings.public_domain:
        return None
    try:
        cluster = KubeModelCluster(settings.models_namespace)
    except Exception as error:
        log.warning("deploys are disabled: no Kubernetes configuration (%s)", type(error).__name__)
        return None
    return deploys.Deployer(
        cluster,
        settings.models_namespace,
        settings.model_service or SERVICE,
        settings.registry,
        settings.public_domain,
        settings.tls_issuer or None,
        settings.ingress_class or None,
        Timing(settings.rollout_deadline_seconds),
    )


def build_app(settings: Settings) -> ASGIApp:
    """Return the ASGI app with its inbox, workers, GitHub client and, when configured, runners."""
    inbox = open_inbox(settings)
    github = github_app(settings)
    runners = runners_from(settings)
    router, features = wiring(runners, deployer_from(settings))
    workers = WorkerPool(
        inbox,
        router,
        github,
        features=features,
        concurrency=settings.workers,
        max_handler_seconds=settings.max_handler_seconds,
    )
    ingest = Ingest(inbox, router, settings.webhook_secret.get_secret_value().encode(), workers.wake)
    periodic = []
    if runners:
        reconciler = reconciler_for(settings, inbox, github, runners)
        periodic.append(Periodic("reconcile", reconciler.run_once, settings.reconcile_seconds))
    return create_app(inbox, ingest, workers, settings.webhook_path, periodic)


def wiring(runners: Runners | None, deployer: deploys.Deployer | None) -> tuple[Router, dict[str, Feature]]:
    """Return every feature's handlers as one router, and the commands they serve."""
    routers = [*ROUTERS, jobs.make_router(runners)] if runners else list(ROUTERS)
    features: dict[str, Feature] = {"retrain": training.Retrain()}
    if deployer:
        routers.append(deploys.router_for(deployer))
        features.update(deploy=deploys.DeployPreview(), rollback=deploys.Rollback(deployer))
    return Router.compose(routers), features


def github_app(settings: Settings) -> GitHubAppClient:
    """Return the App's GitHub client."""
    return GitHubAppClient(settings.github_app_id, settings.private_key(), settings.github_api_url)


def open_inbox(settings: Settings) -> Inbox:
    """Return the inbox of the configured database, its tables created."""
    inbox = Inbox(make_engine(settings.database_url), settings.lease_seconds, settings.max_attempts)
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
    return build_app(load_settings())
