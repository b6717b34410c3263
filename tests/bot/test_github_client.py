"""The real GitHub client (githubkit) over HTTP doubles (respx): tokens, pagination, failures."""

import asyncio
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import REGISTRY

from bot.errors import PermanentError, TemporaryError
from bot.events import Repo
from bot.github import GitHubAppClient
from tests.github_double import GitHubState, serve_github

API = "https://api.github.com"
REPO = Repo("octo-org", "model")
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


def token_body(installation: int) -> dict[str, object]:
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    return {
        "token": f"ghs_installation_{installation}",
        "expires_at": expires,
        "permissions": {"issues": "write"},
        "repository_selection": "all",
    }


@pytest.fixture
def github() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=False, using="httpx") as router:
        for installation in (1, 2):
            router.post(f"/app/installations/{installation}/access_tokens").respond(
                201, json=token_body(installation)
            )
        yield router


def client(api: str = API) -> GitHubAppClient:
    return GitHubAppClient(4242, PEM.decode(), api)


def permission_route(router: respx.MockRouter) -> respx.Route:
    return router.get("/repos/octo-org/model/collaborators/octocat/permission")


async def test_installation_token_is_minted_from_the_app_jwt_and_cached_per_installation(
    github: respx.MockRouter,
) -> None:
    permission_route(github).respond(200, json={"permission": "write", "role_name": "write", "user": None})
    app = client()
    for _ in range(3):
        assert await app.for_installation(1).collaborator_permission(REPO, "octocat") == "write"
    await app.for_installation(2).collaborator_permission(REPO, "octocat")

    mints = [call.request for call in github.calls if call.request.url.path.endswith("/access_tokens")]
    assert [request.url.path for request in mints] == [
        "/app/installations/1/access_tokens",
        "/app/installations/2/access_tokens",
    ]
    app_jwt = mints[0].headers["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(app_jwt, KEY.public_key(), algorithms=["RS256"])
    assert claims["iss"] == "4242"
    assert claims["exp"] - claims["iat"] <= 600
    api_calls = [call.request for call in github.calls if "/permission" in call.request.url.path]
    assert api_calls[0].headers["authorization"] == "token ghs_installation_1"
    assert api_calls[-1].headers["authorization"] == "token ghs_installation_2"


async def test_enterprise_server_api_url_is_used() -> None:
    api = "https://ghe.example.com/api/v3"
    with respx.mock(base_url=api, using="httpx") as router:
        router.post("/app/installations/1/access_tokens").respond(201, json=token_body(1))
        comment = router.post("/repos/octo-org/model/issues/7/comments").respond(201, json={"id": 99})
        assert await client(api).for_installation(1).create_comment(REPO, 7, "hello") == 99
    assert comment.calls.last.request.url.host == "ghe.example.com"
    assert comment.calls.last.request.content == b'{"body":"hello"}'


async def test_reaction_body(github: respx.MockRouter) -> None:
    route = github.post("/repos/octo-org/model/issues/comments/5/reactions").respond(201, json={"id": 1})
    await client().for_installation(1).add_reaction(REPO, 5, "eyes")
    assert route.calls.last.request.content == b'{"content":"eyes"}'


async def test_changed_files_follow_every_page(github: respx.MockRouter) -> None:
    files = "/repos/octo-org/model/pulls/7/files"
    second = f"{API}{files}?per_page=100&page=2"
    github.get(files, params={"page": "2"}).respond(200, json=[{"filename": "params.yaml"}])
    github.get(files).respond(
        200,
        json=[{"filename": f"model/f{i}.py"} for i in range(100)],
        headers={"link": f'<{second}>; rel="next"'},
    )
    changed = await client().for_installation(1).changed_files(REPO, 7)
    assert len(changed) == 101
    assert changed[-1] == "params.yaml"


@pytest.mark.parametrize(
    ("response", "kind", "retry_after"),
    [
        (httpx.Response(502, text="Bad Gateway"), TemporaryError, None),
        (
            httpx.Response(503, json={"message": "unavailable"}, headers={"retry-after": "12"}),
            TemporaryError,
            12,
        ),
        (httpx.Response(429, json={"message": "slow down"}, headers={"retry-after": "7"}), TemporaryError, 7),
        (
            httpx.Response(
                403,
                json={"message": "You have exceeded a secondary rate limit."},
                headers={"retry-after": "60"},
            ),
            TemporaryError,
            60,
        ),
        (
            httpx.Response(
                403,
                json={"message": "API rate limit exceeded"},
                headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 30)},
            ),
            TemporaryError,
            None,
        ),
        (httpx.Response(404, json={"message": "Not Found"}), PermanentError, None),
        (httpx.Response(422, json={"message": "Validation Failed"}), PermanentError, None),
    ],
)
async def test_failures_are_classified(
    github: respx.MockRouter, response: httpx.Response, kind: type[Exception], retry_after: float | None
) -> None:
    permission_route(github).mock(return_value=response)
    with pytest.raises(kind) as caught:
        await client().for_installation(1).collaborator_permission(REPO, "octocat")
    if retry_after is not None:
        assert isinstance(caught.value, TemporaryError)
        assert caught.value.retry_after == pytest.approx(retry_after, abs=1)
    status = str(response.status_code)
    assert REGISTRY.get_sample_value(
        "orbit_github_calls_total", {"call": "get_collaborator_permission", "status": status}
    )


async def test_a_network_error_is_temporary(github: respx.MockRouter) -> None:
    permission_route(github).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(TemporaryError, match="network error"):
        await client().for_installation(1).collaborator_permission(REPO, "octocat")


async def test_a_failed_token_mint_is_classified_too() -> None:
    with respx.mock(base_url=API, using="httpx") as router:
        router.post("/app/installations/1/access_tokens").respond(500)
        with pytest.raises(TemporaryError):
            await client().for_installation(1).collaborator_permission(REPO, "octocat")


async def test_concurrent_calls_over_one_shared_pool_never_cut_each_other_off() -> None:
    # githubkit closes its per-request client after each call; the shared pool must survive that.
    with serve_github(GitHubState()) as url:
        api, repo = client(url).for_installation(1), Repo("octo-org", "model")

        async def one(job_id: int) -> int:
            job = await api.workflow_job(repo, job_id)
            runner_id, _ = await api.generate_jit_config(repo, f"orbit-runner-{job_id}", ["orbit-gpu"], None)
            assert job is not None and runner_id > 0
            return job.id

        for burst in range(5):
            ids = range(burst * 20, (burst + 1) * 20)
            assert await asyncio.gather(*(one(i) for i in ids)) == list(ids)


async def test_one_installation_token_serves_every_delivery_until_near_its_expiry() -> None:
    state = GitHubState()
    with serve_github(state) as url:
        app, repo = client(url), Repo("octo-org", "model")
        await app.for_installation(1).workflow_job(repo, 1)  # the first delivery mints it
        for job_id in range(2, 22):  # each delivery gets its own installation client, as workers do
            await app.for_installation(1).workflow_job(repo, job_id)
        await asyncio.gather(*(app.for_installation(1).workflow_job(repo, i) for i in range(30, 50)))
        assert state.tokens_minted == 1
        await app.for_installation(2).workflow_job(repo, 1)
        assert state.tokens_minted == 2, "a token per installation"
