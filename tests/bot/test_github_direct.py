"""bot/github/direct.py: a runner's two hot calls, sent straight, against what githubkit sends.

A recording GitHub stand-in over real HTTP: each test makes a call once through githubkit (a fresh
client holds no token, so its first call mints one through githubkit) and again straight, and holds
both to the same request and the same outcome.
"""

import asyncio
import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from githubkit import GitHub
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.errors import PermanentError, TemporaryError
from bot.events import Repo
from bot.github import GitHubAppClient
from bot.github.calls import Conflict, NotFound, Unprocessable
from bot.github.direct import API_VERSION, Authorizations, repo_path
from tests.bot.test_github_client import PEM
from tests.serving import serve_in_thread

REPO = Repo("octo-org", "model")
JOB = {"id": 5, "run_id": 9, "status": "queued", "labels": ["self-hosted", "orbit-gpu"], "head_sha": "a"}
JIT = {"runner": {"id": 23, "name": "orbit-runner-5"}, "encoded_jit_config": "ZW5jb2RlZA=="}
COMPARED = ("authorization", "accept", "user-agent", "x-github-api-version", "content-type")


@dataclass
class Recorded:
    """What the stand-in answers each path, and every request it saw but the token mints."""

    answers: dict[str, tuple[int, dict[str, str], Any]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    mints: int = 0
    token_seconds: int = 3600
    compressed: int = 0  # answers sent gzipped, as GitHub sends them to a client that accepts it


def stand_in(state: Recorded) -> Starlette:
    async def mint(request: Request) -> Response:
        state.mints += 1
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + state.token_seconds))
        token = {"token": f"ghs_{state.mints}", "expires_at": expires}
        return Response(orjson.dumps(token), 201, media_type="application/json")

    async def any_call(request: Request) -> Response:
        body = await request.body()
        state.seen.append(
            (request.method, request.url.path, dict(request.headers), orjson.loads(body or b"null"))
        )
        status, headers, answer = state.answers.get(request.url.path, (404, {}, {"message": "Not Found"}))
        content = answer if isinstance(answer, bytes) else orjson.dumps(answer)
        if content and "gzip" in request.headers.get("accept-encoding", ""):  # as api.github.com answers
            content, headers = gzip.compress(content), {**headers, "content-encoding": "gzip"}
            state.compressed += 1
        return Response(content, status, headers=headers, media_type="application/json")

    return Starlette(
        routes=[
            Route("/app/installations/{installation:int}/access_tokens", mint, methods=["POST"]),
            Route("/{path:path}", any_call, methods=["GET", "POST"]),
        ]
    )


@pytest.fixture
def github() -> Iterator[tuple[Recorded, str]]:
    state = Recorded()
    with serve_in_thread(stand_in(state)) as url:
        yield state, url


def through_githubkit(headers: dict[str, str]) -> bool:
    """Return whether a request came through githubkit: its clients ask caches not to answer."""
    return headers.get("cache-control") == "no-cache"


def compared(request: tuple[str, str, dict[str, str], Any]) -> tuple[str, str, dict[str, str], Any]:
    method, path, headers, body = request
    return method, path, {name: headers[name] for name in COMPARED if name in headers}, body


async def test_the_job_read_sends_what_githubkit_sends(github: tuple[Recorded, str]) -> None:
    state, url = github
    state.answers[f"{repo_path(REPO)}/actions/jobs/5"] = (200, {}, JOB)
    client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    first, second = await client.workflow_job(REPO, 5), await client.workflow_job(REPO, 5)
    assert first == second and second is not None
    assert (second.status, second.run_id, second.labels) == ("queued", 9, ["self-hosted", "orbit-gpu"])
    (_, _, kit_headers, _), (_, _, direct_headers, _) = state.seen
    assert through_githubkit(kit_headers) and not through_githubkit(direct_headers)
    assert compared(state.seen[0]) == compared(state.seen[1])
    assert direct_headers["authorization"] == "token ghs_1" and state.mints == 1
    assert state.compressed == 2, "both answers came gzipped, as GitHub's do, and were read"


@pytest.mark.parametrize("group", [None, 7], ids=["repository", "organisation group"])
async def test_the_runner_registration_sends_what_githubkit_sends(
    github: tuple[Recorded, str], group: int | None
) -> None:
    state, url = github
    path = "/orgs/octo-org" if group else repo_path(REPO)
    state.answers[f"{path}/actions/runners/generate-jitconfig"] = (201, {}, JIT)
    client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    for name in ("orbit-runner-5", "orbit-runner-5"):
        assert await client.generate_jit_config(REPO, name, ["self-hosted", "orbit-gpu"], group) == (
            23,
            "ZW5jb2RlZA==",
        )
    assert [through_githubkit(headers) for _, _, headers, _ in state.seen] == [True, False]
    assert compared(state.seen[0]) == compared(state.seen[1])
    assert state.seen[1][3] == {
        "name": "orbit-runner-5",
        "labels": ["self-hosted", "orbit-gpu"],
        "work_folder": "_work",
        "runner_group_id": group or 1,
    }


def test_the_rest_version_is_the_one_githubkit_asks_for() -> None:
    assert GitHub("token").rest.actions._REST_API_VERSION == API_VERSION


def test_owner_and_name_are_quoted_into_the_path() -> None:
    assert repo_path(Repo("octo-org", "../../user")) == "/repos/octo-org/..%2F..%2Fuser"
    assert repo_path(Repo("..", ".")) == "/repos/%2E%2E/%2E", "no server resolves a dot segment"
    assert repo_path(Repo("octo-org", "model.v2")) == "/repos/octo-org/model.v2"


FAILURES = [
    ((502, {}, {"message": "Bad Gateway"}), TemporaryError, None),
    ((503, {"retry-after": "12"}, {"message": "unavailable"}), TemporaryError, 12),
    ((429, {"retry-after": "7"}, {"message": "slow down"}), TemporaryError, 7),
    ((429, {}, {"message": "slow down"}), TemporaryError, None),
    (
        (403, {"retry-after": "60"}, {"message": "You have exceeded a secondary rate limit."}),
        TemporaryError,
        60,
    ),
    (
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "{reset}"}, {"message": "rate"}),
        TemporaryError,
        30,
    ),
    ((403, {"x-ratelimit-remaining": "0"}, {"message": "API rate limit exceeded"}), TemporaryError, 60),
    ((403, {"x-ratelimit-remaining": "12"}, {"message": "Resource not accessible"}), PermanentError, None),
    ((401, {}, {"message": "Bad credentials"}), PermanentError, None),
    ((404, {}, {"message": "Not Found"}), NotFound, None),
    ((409, {}, {"message": "Already exists"}), Conflict, None),
    ((422, {}, {"message": "Validation Failed"}), Unprocessable, None),
]


@pytest.mark.parametrize(("answer", "kind", "retry_after"), FAILURES, ids=lambda v: str(v)[:40])
async def test_a_failure_is_what_it_is_through_githubkit(
    github: tuple[Recorded, str], answer: tuple[int, dict[str, str], Any], kind: type, retry_after: int | None
) -> None:
    state, url = github
    status, headers, body = answer
    headers = {name: value.format(reset=int(time.time()) + 30) for name, value in headers.items()}
    state.answers[f"{repo_path(REPO)}/actions/runners/generate-jitconfig"] = (status, headers, body)
    client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    outcomes = []
    for _ in range(2):
        with pytest.raises((PermanentError, TemporaryError)) as caught:
            await client.generate_jit_config(REPO, "orbit-runner-5", ["self-hosted"], None)
        outcomes.append(caught.value)
    assert [through_githubkit(headers) for _, _, headers, _ in state.seen] == [True, False]
    assert [type(error) for error in outcomes] == [kind, kind]
    assert str(outcomes[0]) == str(outcomes[1])
    waits = [getattr(error, "retry_after", None) for error in outcomes]
    if retry_after is None:
        assert waits == [None, None]
    else:
        assert waits == [pytest.approx(retry_after, abs=2)] * 2
    counted = {"call": "generate_jitconfig", "status": str(status)}
    assert REGISTRY.get_sample_value("orbit_github_calls_total", counted)


async def test_a_job_github_does_not_know_is_none_on_both_paths(github: tuple[Recorded, str]) -> None:
    state, url = github
    client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    assert [await client.workflow_job(REPO, 6), await client.workflow_job(REPO, 6)] == [None, None]
    assert [through_githubkit(headers) for _, _, headers, _ in state.seen] == [True, False]


async def test_a_redirect_is_left_to_githubkit_to_follow(github: tuple[Recorded, str]) -> None:
    state, url = github
    moved = "/repositories/42/actions/jobs/5"  # a renamed repository's calls redirect to its id
    state.answers[f"{repo_path(REPO)}/actions/jobs/5"] = (
        301,
        {"location": url + moved},
        {"message": "Moved"},
    )
    state.answers[moved] = (200, {}, JOB)
    client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    for _ in range(2):
        job = await client.workflow_job(REPO, 5)
        assert job is not None and job.id == 5
    paths = [(path, through_githubkit(headers)) for _, path, headers, _ in state.seen]
    job_path = f"{repo_path(REPO)}/actions/jobs/5"
    assert paths == [(job_path, True), (moved, True), (job_path, False), (job_path, True), (moved, True)]


async def test_a_network_failure_is_temporary() -> None:
    state = Recorded()
    with serve_in_thread(stand_in(state)) as url:
        client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
        assert await client.workflow_job(REPO, 6) is None  # a token minted and cached
    with pytest.raises(TemporaryError, match="network error calling GitHub"):
        await client.workflow_job(REPO, 6)  # the server is gone: refused
    assert state.mints == 1


async def test_a_token_githubkit_dropped_is_never_sent_again() -> None:
    state = Recorded(token_seconds=62)  # githubkit keeps a token until a minute before it expires: 2 s
    with serve_in_thread(stand_in(state)) as url:
        app = GitHubAppClient(4242, PEM.decode(), url)
        app._authorizations.keep_s = 0.5
        client = app.for_installation(1)
        for _ in range(2):
            await client.workflow_job(REPO, 6)
        await asyncio.sleep(2.5)
        for _ in range(2):
            await client.workflow_job(REPO, 6)
    sent = [(headers["authorization"], through_githubkit(headers)) for _, _, headers, _ in state.seen]
    assert sent == [
        ("token ghs_1", True),
        ("token ghs_1", False),
        ("token ghs_2", True),
        ("token ghs_2", False),
    ]


def test_a_header_is_kept_no_longer_than_its_time() -> None:
    now = [0.0]
    kept = Authorizations(keep_s=30.0, clock=lambda: now[0])
    kept.put(1, "token a")
    assert (kept.get(1), kept.get(2)) == ("token a", None)
    now[0] = 29.9
    assert kept.get(1) == "token a"
    now[0] = 30.0
    assert kept.get(1) is None
    assert kept.known == {}, "an old header is dropped, not only hidden"


@pytest.mark.parametrize(
    "answer",
    [(200, {}, b""), (201, {}, b"<html>not json</html>")],
    ids=["empty", "not json"],
)
async def test_a_success_that_is_not_json_fails_as_through_githubkit(
    github: tuple[Recorded, str], answer: tuple[int, dict[str, str], bytes]
) -> None:
    state, url = github
    state.answers[f"{repo_path(REPO)}/actions/runners/generate-jitconfig"] = answer
    client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    for _ in range(2):
        with pytest.raises(json.JSONDecodeError):
            await client.generate_jit_config(REPO, "orbit-runner-5", ["self-hosted"], None)
    assert [through_githubkit(headers) for _, _, headers, _ in state.seen] == [True, False]


async def test_a_retry_after_githubkit_cannot_read_fails_uncounted_on_both_paths(
    github: tuple[Recorded, str],
) -> None:
    state, url = github
    answer = (429, {"retry-after": "1.5"}, {"message": "slow down"})
    state.answers[f"{repo_path(REPO)}/actions/runners/generate-jitconfig"] = answer
    client = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    counted = {"call": "generate_jitconfig", "status": "429"}
    before = REGISTRY.get_sample_value("orbit_github_calls_total", counted)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"1\.5"):
            await client.generate_jit_config(REPO, "orbit-runner-5", ["self-hosted"], None)
    assert [through_githubkit(headers) for _, _, headers, _ in state.seen] == [True, False]
    assert REGISTRY.get_sample_value("orbit_github_calls_total", counted) == before
