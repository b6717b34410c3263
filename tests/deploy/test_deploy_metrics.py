"""Deploys are counted and timed by environment and outcome, in the registry the bot's `/metrics` serves:
a deploy that succeeded, one that failed with the previous model restored, one that failed outright."""

from collections.abc import Callable

from prometheus_client import REGISTRY as METRICS
from prometheus_client import generate_latest

from bot.context import Context
from bot.router import Router
from tests.deploy.test_deploys import (  # noqa: F401 - fixtures
    HEAD,
    MERGED,
    REGISTRY,
    SERVICE,
    built,
    closed,
    deploy_production,
    digest,
    github,
    handle,
    kube,
    setup,
    states,
)
from tests.fakes import comment_payload
from tests.github_double import GitHubState
from tests.kube_double import KubeState

Series = tuple[str, str]  # (environment, outcome)
SERIES: list[Series] = [
    (environment, outcome)
    for environment in ("production", "preview")
    for outcome in ("succeeded", "failed", "restored")
]


def sample(name: str, series: Series) -> float:
    value = METRICS.get_sample_value(name, {"environment": series[0], "outcome": series[1]})
    assert value is not None, f"{name}{series} is not registered"
    return value


def counted() -> Callable[[], dict[Series, tuple[float, float]]]:
    """Return a function giving, per series, the deploys counted and timed since this call."""
    before = {
        s: (sample("orbit_deploys_total", s), sample("orbit_deploy_duration_seconds_count", s))
        for s in SERIES
    }

    def since() -> dict[Series, tuple[float, float]]:
        now = {
            s: (sample("orbit_deploys_total", s), sample("orbit_deploy_duration_seconds_count", s))
            for s in SERIES
        }
        changed = {s: (now[s][0] - before[s][0], now[s][1] - before[s][1]) for s in SERIES}
        return {s: change for s, change in changed.items() if change != (0, 0)}

    return since


def test_every_series_is_served_from_the_start() -> None:
    served = generate_latest().decode()
    for environment, outcome in SERIES:
        labels = f'environment="{environment}",outcome="{outcome}"'
        assert f"orbit_deploys_total{{{labels}}}" in served
        assert f"orbit_deploy_duration_seconds_count{{{labels}}}" in served


async def test_succeeded_deploys_are_counted_and_timed_by_environment(
    setup: tuple[Context, Router],  # noqa: F811
    github: GitHubState,  # noqa: F811
) -> None:
    since = counted()
    timed = sample("orbit_deploy_duration_seconds_sum", ("production", "succeeded"))
    await deploy_production(setup, github, 1)
    assert since() == {("production", "succeeded"): (1, 1)}
    assert sample("orbit_deploy_duration_seconds_sum", ("production", "succeeded")) > timed
    await handle(setup, "issue_comment", comment_payload("/deploy"))
    preview = github.reports.deployments[0]["id"]
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(2)}
    await handle(setup, "workflow_run", built(github, preview, "pr-7", HEAD, 0, image))
    assert since() == {("production", "succeeded"): (1, 1), ("preview", "succeeded"): (1, 1)}


async def test_a_failed_deploy_with_the_previous_model_restored_counts_as_restored(
    setup: tuple[Context, Router],  # noqa: F811
    github: GitHubState,  # noqa: F811
    kube: KubeState,  # noqa: F811
) -> None:
    await deploy_production(setup, github, 1)
    kube.behaviour[f"{REGISTRY}/{SERVICE}@{digest(2)}"] = "crashloop"
    since = counted()
    second = await deploy_production(setup, github, 2, pull=8)
    assert states(github, second)[-1] == "failure"
    assert since() == {("production", "restored"): (1, 1)}


async def test_failed_deploys_count_as_failed_and_a_superseded_build_not_at_all(
    setup: tuple[Context, Router],  # noqa: F811
    github: GitHubState,  # noqa: F811
    kube: KubeState,  # noqa: F811
) -> None:
    since = counted()
    kube.behaviour[f"{REGISTRY}/{SERVICE}@{digest(1)}"] = "crashloop"
    await deploy_production(setup, github, 1)  # the first model fails: nothing to restore
    await handle(setup, "pull_request", closed(8))
    broken = github.reports.deployments[0]["id"]
    failure = built(github, broken, "production", MERGED, 0, None, "failure", pull=8)
    await handle(setup, "workflow_run", failure)  # the image build failed
    await handle(setup, "pull_request", closed(9))
    older = github.reports.deployments[0]["id"]
    await handle(setup, "pull_request", closed(10))
    image = {"image": f"{REGISTRY}/{SERVICE}", "digest": digest(2)}
    await handle(setup, "workflow_run", built(github, older, "production", MERGED, 0, image, pull=9))
    assert states(github, older) == ["queued", "inactive"], "PR 10's deployment superseded PR 9's"
    assert since() == {("production", "failed"): (2, 2)}
