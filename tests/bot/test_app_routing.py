"""Every real payload through the composition root's router, with every feature registered.

For each example of `@octokit/webhooks-examples` (github.com and GitHub Enterprise Server), the test
says which handlers must run, that each reads the payload into its typed event, and what the bot
then does: trains a same-repository PR that touches the pipeline, deploys a merge into the default
branch, answers a command, records an installation, and leaves alone what is not orbit's.
"""

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bot.app import wiring
from bot.context import Context
from bot.delivery import Delivery
from bot.events import read
from bot.inbox import Inbox
from bot.installations import repository_list
from bot.router import Router
from deploy.flow import Deployer
from deploy.kube import KubeModelCluster
from deploy.rollout import Timing
from runner.classes import default_classes
from runner.jobs import Runners
from runner.kube import KubeCluster
from tests.fakes import FakeGitHub, delivery, memory_inbox
from tests.kube_double import KubeState, serve_kube

EXAMPLES: list[dict[str, Any]] = json.loads(
    gzip.decompress((Path(__file__).parent.parent / "fixtures/webhook-examples.json.gz").read_bytes())
)
TRAINING = "runner.training.on_pull_request"
CLOSED = "deploy.flow.router_for.<locals>.on_closed"
COMMANDS = "bot.commands.on_comment"
PUBLISH = "runner.report.publish.on_training_run_completed"
SWEEP = "runner.sweeps.publish.on_sweep_point_completed"
BUILT = "deploy.flow.router_for.<locals>.on_build_completed"
JOB = "runner.jobs.make_router.<locals>"
# Which handlers each (event, action) must reach; anything not listed reaches none and is ignored.
EXPECTED: dict[tuple[str, str], list[str]] = {
    **{("pull_request", a): [TRAINING] for a in ("opened", "synchronize", "reopened", "ready_for_review")},
    ("pull_request", "closed"): [CLOSED],
    ("issue_comment", "created"): [COMMANDS],
    ("workflow_run", "completed"): [PUBLISH, SWEEP, BUILT],
    ("workflow_job", "queued"): [f"{JOB}.queued"],
    ("workflow_job", "in_progress"): [f"{JOB}.in_progress"],
    ("workflow_job", "completed"): [f"{JOB}.completed"],
    **{
        ("installation", a): ["bot.installations.on_installation"]
        for a in ("created", "deleted", "suspend", "unsuspend", "new_permissions_accepted")
    },
    **{("installation_repositories", a): ["bot.installations.on_repositories"] for a in ("added", "removed")},
}


def case_id(example: dict[str, Any]) -> str:
    return f"{example['source']}-{example['event']}-{example['payload'].get('action', '')}"


@pytest.fixture(scope="module")
def kube() -> KubeState:
    return KubeState()


@pytest.fixture(scope="module")
def router(kube: KubeState) -> Iterator[tuple[Router, dict[str, Any]]]:
    """One cluster double for the module: no case may create anything in it."""
    with serve_kube(kube) as url:
        yield _wired(client.ApiClient(client.Configuration(host=url)))


def _wired(api: client.ApiClient) -> tuple[Router, dict[str, Any]]:
    runners = Runners(
        KubeCluster("orbit-runners", api), default_classes("ghcr.io/o/runner:1", "nvidia.com/gpu", 2)
    )
    deployer = Deployer(
        KubeModelCluster("models", api),
        "models",
        "model",
        "ghcr.io/o",
        "models.example.com",
        timing=Timing(0.3),
    )
    router, features = wiring(runners, deployer)
    return router, dict(features)


@pytest.mark.parametrize("example", EXAMPLES, ids=case_id)
def test_each_real_payload_reaches_exactly_the_handlers_that_want_it(
    router: tuple[Router, dict[str, Any]], example: dict[str, Any]
) -> None:
    routes = router[0].handlers_for(example["event"], example["payload"].get("action", ""))
    assert [route.name for route in routes] == EXPECTED.get(
        (example["event"], example["payload"].get("action", "")), []
    )
    for route in routes:
        assert read(delivery(example["event"], example["payload"]), route.kind) is not None, (
            f"{route.name} cannot read this real payload"
        )


def should_train(payload: dict[str, Any]) -> bool:
    pull = payload["pull_request"]
    same_repo = (pull["head"]["repo"] or {}).get("full_name") == pull["base"]["repo"]["full_name"]
    trains = ("opened", "synchronize", "reopened", "ready_for_review")
    return payload["action"] in trains and not pull.get("draft") and same_repo


def should_ship(payload: dict[str, Any]) -> bool:
    pull = payload["pull_request"]
    return (
        payload["action"] == "closed"
        and bool(pull.get("merged"))
        and pull["base"]["ref"] == (payload["repository"]["default_branch"])
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=case_id)
async def test_each_real_payload_gets_the_decision_it_calls_for(
    router: tuple[Router, dict[str, Any]], kube: KubeState, example: dict[str, Any]
) -> None:
    event, payload = example["event"], {"installation": {"id": 1}, **example["payload"]}
    github = FakeGitHub(files=["params.yaml"], permissions={"Codertocat": "admin"})
    store = memory_inbox()
    context = Context(github, store, router[1])
    given: Delivery = delivery(event, payload)
    for route in router[0].handlers_for(event, given.action):
        await route(given, context)
    made = {name for name, _ in github.calls}
    if event == "pull_request":
        assert ("dispatch" in made) == (should_train(payload) or should_ship(payload)), made
        if payload["action"] == "closed":
            assert "deployments" in made, "a closed PR's preview is torn down"
    elif event == "issue_comment" and payload["action"] == "created":
        commands = [line for line in payload["comment"]["body"].splitlines() if line.startswith("/")]
        assert ("comment" in made) == bool(commands), made
    elif event == "installation":
        assert isinstance(store, Inbox)
        listed = [name for _, name in repository_list(store.engine)]
        wanted = (
            []
            if payload["action"] == "deleted"
            else sorted(r["full_name"] for r in payload.get("repositories") or [])
        )
        assert listed == wanted
    elif event in ("workflow_job", "workflow_run"):
        assert made == set(), "a run or job orbit did not start is left alone"
        assert kube.objects == {}, "and gets no runner pod"
    else:
        assert made == set(), f"{event} is not orbit's business"


def _variants() -> list[tuple[str, str, dict[str, Any]]]:
    """Real payloads changed the way a fork, a draft, a merge or a command changes them."""
    made: list[tuple[str, str, dict[str, Any]]] = []
    for example in EXAMPLES:
        event, payload = example["event"], example["payload"]
        if event == "pull_request" and payload.get("action") == "opened":
            fork = json.loads(json.dumps(payload))
            fork["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
            draft = json.loads(json.dumps(payload))
            draft["pull_request"]["draft"] = True
            made += [(f"{case_id(example)}-fork", event, fork), (f"{case_id(example)}-draft", event, draft)]
        if event == "pull_request" and payload.get("action") == "closed":
            merged = json.loads(json.dumps(payload))
            merged["pull_request"].update(merged=True, merge_commit_sha="e" * 40)
            made.append((f"{case_id(example)}-merged", event, merged))
        if event == "issue_comment" and payload.get("action") == "created":
            command = json.loads(json.dumps(payload))
            command["comment"]["body"] = "thanks!\n/help"
            command["issue"]["pull_request"] = {"url": "https://api.github.com/repos/o/r/pulls/1"}
            made.append((f"{case_id(example)}-help", event, command))
    return made


@pytest.mark.parametrize(("name", "event", "payload"), _variants(), ids=[v[0] for v in _variants()])
async def test_each_changed_real_payload_gets_the_decision_it_calls_for(
    router: tuple[Router, dict[str, Any]], name: str, event: str, payload: dict[str, Any]
) -> None:
    github = FakeGitHub(files=["params.yaml"])
    given = delivery(event, {"installation": {"id": 1}, **payload})
    for route in router[0].handlers_for(event, given.action):
        await route(given, Context(github, memory_inbox(), router[1]))
    dispatched = list(github.named("dispatch"))
    if name.endswith(("-fork", "-draft")):
        assert dispatched == [], "a fork's or a draft's PR is not trained on its own"
    elif name.endswith("-merged"):
        assert [args[1:3] for args in dispatched] == [("deploy.yml", "master")], (
            "a merge ships from the default branch"
        )
    else:
        assert [args[1] for args in github.named("comment")] == [payload["issue"]["number"]]
        assert "orbit understands these commands" in github.named("comment")[0][2]
