"""Every GitHub and Kubernetes call is bounded: artifacts by size, every request by time.

Attacks: an artifact listed as larger than its reader accepts; one whose listed size lies (its
storage sending a length, or none at all); a GitHub and a Kubernetes API server that accept the
connection and never answer.
"""

import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from kubernetes import client

from bot.errors import PermanentError, TemporaryError
from bot.events import Repo
from bot.github import ArtifactInfo, GitHubAppClient, named_artifact
from bot.github.actions import MAX_LOG_TAIL_BYTES, ArtifactTooLarge
from bot.github.client import GITHUB_TIMEOUT
from bot.kube_api import KUBE_TIMEOUT, KubeApi
from tests.bot.test_github_client import PEM
from tests.fakes import FakeGitHub
from tests.github_double import GitHubState, serve_github

REPO = Repo("octo-org", "model")
KiB, MiB = 1024, 1024 * 1024
RUN, ARTIFACT = 77, 9001


@pytest.fixture
def double() -> Iterator[tuple[GitHubState, str]]:
    state = GitHubState()
    with serve_github(state) as url:
        yield state, url


def artifact(state: GitHubState, data: bytes, listed: int) -> None:
    state.reports.artifacts[RUN] = [
        {"id": ARTIFACT, "name": "orbit-report", "expired": False, "size_in_bytes": listed}
    ]
    state.reports.artifact_zips[ARTIFACT] = data


def downloads(state: GitHubState) -> list[str]:
    return [what for _, method, what in state.reports.requests if what == "artifact"]


async def test_an_artifact_listed_over_the_limit_is_never_downloaded(double: tuple[GitHubState, str]) -> None:
    state, url = double
    artifact(state, b"PK" + b"\0" * (2 * MiB), listed=2 * MiB + 2)
    api = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    with pytest.raises(
        ArtifactTooLarge, match=r"is 2,097,154 bytes; at most 1,048,576 bytes are read"
    ) as caught:
        await named_artifact(api, REPO, RUN, "orbit-report", max_bytes=MiB)
    assert isinstance(caught.value, PermanentError)  # retrying cannot make it smaller
    assert downloads(state) == []  # not even asked for the redirect
    assert state.reports.storage_auth == []  # nothing asked of storage


async def test_an_artifact_that_understates_its_size_is_refused_from_storages_length(
    double: tuple[GitHubState, str],
) -> None:
    state, url = double
    artifact(state, b"\0" * (4 * MiB), listed=1000)
    api = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    with pytest.raises(ArtifactTooLarge, match="is 4,194,304 bytes; at most 1,048,576"):
        await named_artifact(api, REPO, RUN, "orbit-report", max_bytes=MiB)
    assert state.reports.storage_auth == [None]  # one request to storage, without the token


async def test_an_artifact_that_lies_with_no_length_is_cut_off_at_the_limit(
    double: tuple[GitHubState, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = double
    artifact(state, b"\0" * (16 * MiB), listed=1000)
    state.unsized_artifacts.add(ARTIFACT)  # storage streams it chunked: only the reader's count stops it
    read = 0
    aiter_bytes = httpx.Response.aiter_bytes

    async def counted(response: httpx.Response, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        nonlocal read
        async for chunk in aiter_bytes(response, chunk_size):
            read += len(chunk)
            yield chunk

    monkeypatch.setattr(httpx.Response, "aiter_bytes", counted)
    api = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    with pytest.raises(ArtifactTooLarge, match="is more than that; at most 262,144 bytes are read"):
        await named_artifact(api, REPO, RUN, "orbit-report", max_bytes=256 * KiB)
    assert state.reports.storage_auth == [None]
    assert 256 * KiB < read <= 256 * KiB + 128 * KiB  # one network read past the limit, of 16 MiB


async def test_an_artifact_within_the_limit_is_read_whole_and_storage_never_sees_the_token(
    double: tuple[GitHubState, str],
) -> None:
    state, url = double
    data = bytes(range(256)) * (4 * KiB)
    artifact(state, data, listed=len(data))
    state.unsized_artifacts.add(ARTIFACT)
    api = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    assert await named_artifact(api, REPO, RUN, "orbit-report", max_bytes=len(data)) == data
    assert state.reports.storage_auth == [None]


async def test_the_fake_cuts_off_a_lying_artifact_like_the_real_client() -> None:
    github = FakeGitHub()
    github.artifacts[RUN] = [(ArtifactInfo(ARTIFACT, "orbit-report", False, 10), b"\0" * 2048)]
    with pytest.raises(ArtifactTooLarge):
        await named_artifact(github, REPO, RUN, "orbit-report", max_bytes=1024)
    github.artifacts[RUN] = [(ArtifactInfo(ARTIFACT, "orbit-report", False, 4096), b"\0" * 10)]
    with pytest.raises(ArtifactTooLarge):
        await named_artifact(github, REPO, RUN, "orbit-report", max_bytes=1024)
    assert github.named("download_artifact") == [(REPO.full_name, ARTIFACT)]  # the second: never


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections (the kernel does, from the backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_a_github_that_never_answers_fails_the_call_as_temporary_within_the_timeout(
    silent_server: str,
) -> None:
    timeout = httpx.Timeout(0.3)
    api = GitHubAppClient(4242, PEM.decode(), silent_server, timeout=timeout).for_installation(1)
    started = time.monotonic()
    with pytest.raises(TemporaryError, match="network error"):
        await api.collaborator_permission(REPO, "octocat")
    assert time.monotonic() - started < 1.5  # without a timeout, it waited forever


async def test_an_api_call_that_never_answers_fails_as_temporary_within_the_timeout(
    double: tuple[GitHubState, str],
) -> None:
    state, url = double
    state.delay = 2  # the permission route answers after 2 s (the server waits for it to stop)
    api = GitHubAppClient(4242, PEM.decode(), url, timeout=httpx.Timeout(0.3)).for_installation(1)
    started = time.monotonic()
    with pytest.raises(TemporaryError, match="network error"):
        await api.collaborator_permission(REPO, "octocat")
    assert time.monotonic() - started < 1.5


def test_githubs_default_timeouts_are_finite() -> None:
    for phase in ("connect", "read", "write", "pool"):
        seconds = GITHUB_TIMEOUT.as_dict()[phase]
        assert seconds is not None
        assert 0 < seconds <= 60
    api = GitHubAppClient(4242, PEM.decode(), "https://api.github.com")
    assert api._github.config.timeout == GITHUB_TIMEOUT


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_kubernetes_api_server_that_never_answers_fails_as_temporary_within_the_timeout(
    silent_server: str, method: str
) -> None:
    kube = KubeApi(client.ApiClient(client.Configuration(host=silent_server)), timeout=(0.3, 0.3))
    started = time.monotonic()
    with pytest.raises(TemporaryError, match="cannot reach Kubernetes"):
        kube.json(method, "/api/v1/namespaces/orbit/pods", "list pods", body={} if method == "POST" else None)
    # One read: a GET is not retried three more times after a read timed out (urllib3's default).
    assert time.monotonic() - started < 1.0


def test_kubernetes_default_timeouts_are_finite() -> None:
    connect, read = KUBE_TIMEOUT
    assert 0 < connect <= 30
    assert 0 < read <= 60


async def test_a_huge_job_log_is_read_to_its_end_keeping_only_the_tail(
    double: tuple[GitHubState, str],
) -> None:
    state, url = double
    lines = [f"2026-11-27T10:00:00.0000000Z line {i} " + "x" * 80 for i in range(60_000)]  # ~7 MiB
    state.reports.logs[31] = "\n".join([*lines, "##[error]the real failure", "Post job cleanup."])
    api = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    tail = await api.job_log(REPO, 31)
    assert len(tail.encode()) <= MAX_LOG_TAIL_BYTES
    assert tail.endswith("##[error]the real failure\nPost job cleanup.")
    assert tail.startswith("2026-11-27T10:00:00.0000000Z line ")  # whole lines only
    assert state.reports.storage_auth == [None]


async def test_a_short_job_log_is_read_whole(double: tuple[GitHubState, str]) -> None:
    state, url = double
    state.reports.logs[32] = "one\ntwo\n##[error]three"
    api = GitHubAppClient(4242, PEM.decode(), url).for_installation(1)
    assert await api.job_log(REPO, 32) == "one\ntwo\n##[error]three"
