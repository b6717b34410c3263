"""The runner and training calls of the real GitHub client, over respx: exactly what is sent.

The job read and the runner registration go straight on aiohttp once a token is cached, past respx:
tests/bot/test_github_direct.py holds both paths to the same requests over real HTTP.
"""

import json
from collections.abc import Iterator

import pytest
import respx

from bot.events import Repo
from bot.github import CheckUpdate, GitHubAppClient
from tests.bot.test_github_client import API, PEM, token_body

REPO = Repo("octo-org", "model")
BASE = "/repos/octo-org/model"


@pytest.fixture
def github() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=True, using="httpx") as router:
        router.post("/app/installations/1/access_tokens").respond(201, json=token_body(1))
        yield router


def api() -> GitHubAppClient:
    return GitHubAppClient(4242, PEM.decode(), API)


def sent(route: respx.Route) -> dict[str, object]:
    body: dict[str, object] = json.loads(route.calls.last.request.content)
    return body


async def test_jit_config_request_body(github: respx.MockRouter) -> None:
    route = github.post(f"{BASE}/actions/runners/generate-jitconfig").respond(
        201, json={"runner": {"id": 23, "name": "orbit-runner-5"}, "encoded_jit_config": "ZW5jb2RlZA=="}
    )
    runner_id, config = (
        await api()
        .for_installation(1)
        .generate_jit_config(REPO, "orbit-runner-5", ["self-hosted", "orbit-gpu"], None)
    )
    assert (runner_id, config) == (23, "ZW5jb2RlZA==")
    assert sent(route) == {
        "name": "orbit-runner-5",
        "runner_group_id": 1,
        "labels": ["self-hosted", "orbit-gpu"],
        "work_folder": "_work",
    }


async def test_a_runner_group_registers_the_runner_in_the_organisation(github: respx.MockRouter) -> None:
    org_route = github.post("/orgs/octo-org/actions/runners/generate-jitconfig").respond(
        201, json={"runner": {"id": 24, "name": "orbit-runner-6"}, "encoded_jit_config": "b3Jn"}
    )
    github.get("/orgs/octo-org/actions/runners", params={"name": "orbit-runner-6"}).respond(
        200, json={"total_count": 1, "runners": [{"id": 24, "name": "orbit-runner-6"}]}
    )
    deleted = github.delete("/orgs/octo-org/actions/runners/24").respond(204)
    client = api().for_installation(1)
    assert await client.generate_jit_config(REPO, "orbit-runner-6", ["self-hosted", "orbit-gpu"], 7) == (
        24,
        "b3Jn",
    )
    assert sent(org_route) == {
        "name": "orbit-runner-6",
        "runner_group_id": 7,
        "labels": ["self-hosted", "orbit-gpu"],
        "work_folder": "_work",
    }
    assert await client.find_runner(REPO, "orbit-runner-6", in_organization=True) == 24
    await client.delete_runner(REPO, 24, in_organization=True)
    assert deleted.call_count == 1
    # never on the repository, where any workflow of the repository could be given the runner
    assert not [call for call in github.calls if call.request.url.path.startswith(BASE)]


async def test_dispatch_asks_for_the_run_and_answers_its_id(github: respx.MockRouter) -> None:
    details = {"workflow_run_id": 901, "run_url": f"{BASE}/actions/runs/901", "html_url": "https://x/901"}
    route = github.post(f"{BASE}/actions/workflows/train.yml/dispatches").respond(200, json=details)
    client = api().for_installation(1)
    assert await client.dispatch_workflow(REPO, "train.yml", "main", {"pr": "7", "sha": "a" * 40}) == 901
    assert sent(route) == {"ref": "main", "inputs": {"pr": "7", "sha": "a" * 40}, "return_run_details": True}


async def test_a_run_is_read_with_what_recognises_it(github: respx.MockRouter) -> None:
    github.get(f"{BASE}/actions/runs/901").respond(
        200,
        json={
            "id": 901,
            "status": "queued",
            "display_title": "orbit/train PR #7 at " + "a" * 40,
            "path": ".github/workflows/train.yml",
            "event": "workflow_dispatch",
            "head_sha": "d" * 40,
            "head_repository": {"full_name": "octo-org/model"},
        },
    )
    run = await api().for_installation(1).workflow_run(REPO, 901)
    assert (run.path, run.event, run.head_sha, run.head_repo) == (
        ".github/workflows/train.yml",
        "workflow_dispatch",
        "d" * 40,
        "octo-org/model",
    )


async def test_cancel_of_a_superseded_run_tolerates_one_already_finished(github: respx.MockRouter) -> None:
    github.post(f"{BASE}/actions/runs/31/cancel").respond(202, json={})
    github.post(f"{BASE}/actions/runs/32/cancel").respond(
        409, json={"message": "Cannot cancel a workflow run that is completed."}
    )
    client = api().for_installation(1)
    await client.cancel_run(REPO, 31)
    await client.cancel_run(REPO, 32)


async def test_check_run_transitions(github: respx.MockRouter) -> None:
    create = github.post(f"{BASE}/check-runs").respond(201, json={"id": 77})
    update = github.patch(f"{BASE}/check-runs/77").respond(200, json={"id": 77})
    client = api().for_installation(1)
    check = await client.create_check_run(
        REPO, "a" * 40, "orbit/train", "Training queued", "Waiting for a runner"
    )
    assert sent(create) == {
        "name": "orbit/train",
        "head_sha": "a" * 40,
        "status": "queued",
        "output": {"title": "Training queued", "summary": "Waiting for a runner"},
    }
    await client.update_check_run(
        REPO,
        check,
        CheckUpdate(
            status="in_progress", title="Training", summary="On runner x", details_url="https://github.com/x"
        ),
    )
    assert sent(update) == {
        "status": "in_progress",
        "details_url": "https://github.com/x",
        "output": {"title": "Training", "summary": "On runner x"},
    }
    await client.update_check_run(
        REPO, check, CheckUpdate(conclusion="cancelled", title="Superseded", summary="by b")
    )
    assert sent(update) == {
        "status": "completed",
        "conclusion": "cancelled",
        "output": {"title": "Superseded", "summary": "by b"},
    }


async def test_listing_runs_runners_and_check_runs(github: respx.MockRouter) -> None:
    github.get(f"{BASE}/actions/workflows/train.yml/runs", params={"status": "queued"}).respond(
        200,
        json={
            "total_count": 1,
            "workflow_runs": [
                {"id": 31, "status": "queued", "display_title": "orbit/train PR #7 at abc", "head_sha": "abc"}
            ],
        },
    )
    github.get(f"{BASE}/actions/runners", params={"name": "orbit-runner-5"}).respond(
        200, json={"total_count": 1, "runners": [{"id": 23, "name": "orbit-runner-5"}]}
    )
    github.get(f"{BASE}/commits/abc/check-runs").respond(
        200, json={"total_count": 1, "check_runs": [{"id": 77, "status": "queued"}]}
    )
    github.delete(f"{BASE}/actions/runners/23").respond(204)
    client = api().for_installation(1)
    (run,) = await client.workflow_runs(REPO, "train.yml", "queued")
    assert (run.id, run.title) == (31, "orbit/train PR #7 at abc")
    assert await client.find_runner(REPO, "orbit-runner-5") == 23
    assert await client.check_runs(REPO, "abc", "orbit/train") == [(77, "queued")]
    await client.delete_runner(REPO, 23)


async def test_orbit_yml_is_read_raw_and_a_missing_one_is_none(github: respx.MockRouter) -> None:
    github.get(f"{BASE}/contents/.github/orbit.yml", params={"ref": "main"}).respond(
        200, text="training: {}\n"
    )
    github.get(f"{BASE}/contents/.github/orbit.yml", params={"ref": "dev"}).respond(
        404, json={"message": "Not Found"}
    )
    client = api().for_installation(1)
    assert await client.file_text(REPO, ".github/orbit.yml", "main") == "training: {}\n"
    assert await client.file_text(REPO, ".github/orbit.yml", "dev") is None
