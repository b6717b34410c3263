"""The runner's Kubernetes calls on the event loop's aiohttp pool: the configuration's TLS, token, limits.

The official client's urllib3 pool is what the configuration was written for; the aiohttp path must
verify the API server as strictly, present the same client certificate and token, and leave to that
pool what it cannot reproduce.
"""

import asyncio
import datetime
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.routing import Route

from bot import kube_api
from bot.errors import TemporaryError
from bot.kube_api import KubeApi, on_the_loop
from runner.kube import KubeCluster
from tests.kube_double import KubeState, make_app
from tests.serving import serve_in_thread

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orbit-runner-1"}, "spec": {"containers": []}}
DAY = datetime.timedelta(days=1)


class Authority:
    """A certificate authority that issues server and client certificates into a folder."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            self._builder(subject, self.key.public_key())
            .issuer_name(subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = self._write(f"{name}-ca.crt", self.certificate.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject: x509.Name, key: Any) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + DAY)
        )

    def _write(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)

    def issue(self, name: str, names: list[x509.GeneralName]) -> tuple[str, str]:
        """Return the paths of a certificate for `names` (none: a client's; its common name is `name`)."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key())
        builder = builder.issuer_name(self.certificate.subject)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        key_bytes = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return (
            self._write(f"{name}.crt", certificate.public_bytes(serialization.Encoding.PEM)),
            self._write(f"{name}.key", key_bytes),
        )


LOCALHOST: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


@pytest.fixture
def authorities(tmp_path: Path) -> tuple[Authority, Authority]:
    """The cluster's CA, and an impostor's."""
    return Authority(tmp_path, "cluster"), Authority(tmp_path, "impostor")


def serve_tls(state: KubeState, certificate: tuple[str, str], **options: Any) -> Any:
    return serve_in_thread(
        make_app(state), ssl_certfile=certificate[0], ssl_keyfile=certificate[1], **options
    )


def create_at(url: str, **settings: Any) -> tuple[str, bool]:
    """Create the pod through a cluster configured with `settings`; close its connections after."""
    configuration = client.Configuration(host=url)
    for name, value in settings.items():
        setattr(configuration, name, value)
    cluster = KubeCluster("orbit-runners", client.ApiClient(configuration))

    async def create() -> tuple[str, bool]:
        try:
            return await cluster.create_pod(POD)
        finally:
            await cluster.http.aclose()

    return asyncio.run(create())


def test_the_api_server_is_verified_against_the_configured_authority(
    authorities: tuple[Authority, Authority],
) -> None:
    """The attack: an impostor API server (its certificate from another CA) gets nothing: no pod."""
    cluster_ca, impostor = authorities
    state, fake = KubeState(), KubeState()
    with serve_tls(state, cluster_ca.issue("apiserver", LOCALHOST)) as url:
        uid, new = create_at(url, ssl_ca_cert=cluster_ca.path)
    assert new and list(state.of("pods")) == ["orbit-runner-1"] and uid
    impostor_server = impostor.issue("impostor-server", LOCALHOST)
    with serve_tls(fake, impostor_server) as url, pytest.raises(TemporaryError, match="cannot reach"):
        create_at(url, ssl_ca_cert=cluster_ca.path)
    assert fake.of("pods") == {}, "the manifest reached a server the configuration does not trust"


def test_verification_is_off_only_when_the_configuration_says_so(
    authorities: tuple[Authority, Authority],
) -> None:
    _, impostor = authorities
    state = KubeState()
    with serve_tls(state, impostor.issue("self-signed-ish", LOCALHOST)) as url:
        with pytest.raises(TemporaryError):  # no CA configured: the system's, which do not know it
            create_at(url)
        create_at(url, verify_ssl=False)
    assert list(state.of("pods")) == ["orbit-runner-1"]


def test_the_tls_server_name_is_checked_instead_of_the_address(
    authorities: tuple[Authority, Authority],
) -> None:
    """A certificate for `kubernetes.default` only, reached at 127.0.0.1, as `tls-server-name` allows."""
    cluster_ca, _ = authorities
    state = KubeState()
    named = cluster_ca.issue("named", [x509.DNSName("kubernetes.default")])
    with serve_tls(state, named) as url:
        with pytest.raises(TemporaryError):
            create_at(url, ssl_ca_cert=cluster_ca.path)
        settings = {"ssl_ca_cert": cluster_ca.path, "tls_server_name": "kubernetes.default"}
        create_at(url, **settings)
    assert list(state.of("pods")) == ["orbit-runner-1"]


def test_the_configured_client_certificate_is_presented(authorities: tuple[Authority, Authority]) -> None:
    cluster_ca, _ = authorities
    state = KubeState()
    client_cert, client_key = cluster_ca.issue("orbit-user", [])
    requiring = {"ssl_ca_certs": cluster_ca.path, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    with serve_tls(state, cluster_ca.issue("apiserver", LOCALHOST), **requiring) as url:
        with pytest.raises(TemporaryError):
            create_at(url, ssl_ca_cert=cluster_ca.path)
        settings = {"ssl_ca_cert": cluster_ca.path, "cert_file": client_cert, "key_file": client_key}
        create_at(url, **settings)
    assert list(state.of("pods")) == ["orbit-runner-1"]


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A server that records each request's headers; /moved redirects to /elsewhere."""
    seen: list[dict[str, str]] = []

    async def record(request: Request) -> JSONResponse:
        seen.append({"path": request.url.path, **dict(request.headers)})
        return JSONResponse({"metadata": {"uid": "u-1"}}, status_code=201)

    async def moved(request: Request) -> RedirectResponse:
        seen.append({"path": request.url.path, **dict(request.headers)})
        return RedirectResponse("/elsewhere", status_code=307)

    async def proxy_page(request: Request) -> HTMLResponse:
        return HTMLResponse("<html><body>502 Bad Gateway</body></html>", status_code=502)

    routes = [
        Route("/moved", moved, methods=["POST"]),
        Route("/proxy-page", proxy_page),
        Route("/{path:path}", record, methods=["GET", "POST"]),
    ]
    with serve_in_thread(Starlette(routes=routes)) as url:
        yield url, seen


def with_token(url: str) -> KubeApi:
    configuration = client.Configuration(host=url)
    configuration.api_key = {"authorization": "the-token"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return KubeApi(client.ApiClient(configuration))


def test_both_paths_send_the_token_and_the_same_headers(recorder: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = recorder
    api = with_token(url)
    api.expect("POST", "/sync", "create pod", body=POD)
    asyncio.run(api.aexpect("POST", "/async", "create pod", body=POD))
    compared = ("authorization", "accept", "content-type")
    sync, in_loop = ({name: value for name, value in s.items() if name in compared} for s in seen)
    assert (
        sync
        == in_loop
        == {
            "authorization": "Bearer the-token",
            "accept": "application/json",
            "content-type": "application/json",
        }
    )


def test_a_redirect_is_not_followed_with_the_token(recorder: tuple[str, list[dict[str, str]]]) -> None:
    """An API server does not redirect; one that does gets a 307 back as an error, not a second request."""
    url, seen = recorder
    with pytest.raises(Exception, match="307"):
        asyncio.run(with_token(url).aexpect("POST", "/moved", "create pod", body=POD))
    assert [request["path"] for request in seen] == ["/moved"]


def test_a_common_name_is_not_taken_for_the_host_name(authorities: tuple[Authority, Authority]) -> None:
    """Review finding F1: a certificate of the cluster's CA naming `kubernetes.default` only in its CN.

    urllib3 (the official client's pool) refuses it; Python's default context accepted it, so the
    manifest and the token reached a server whose certificate names no host.
    """
    cluster_ca, _ = authorities
    state = KubeState()
    settings = {"ssl_ca_cert": cluster_ca.path, "tls_server_name": "kubernetes.default"}
    with serve_tls(state, cluster_ca.issue("kubernetes.default", [])) as url, pytest.raises(TemporaryError):
        create_at(url, **settings)
    assert state.of("pods") == {}


def test_an_unreadable_ca_file_fails_the_request_not_the_client(tmp_path: Path) -> None:
    """Review finding F6: the first request reads the CA, and fails as temporary, as urllib3 would."""
    configuration = client.Configuration(host="https://127.0.0.1:1")
    configuration.ssl_ca_cert = str(tmp_path / "missing-ca.crt")
    api = KubeApi(client.ApiClient(configuration))  # building the client reads nothing yet
    with pytest.raises(TemporaryError, match="cannot reach Kubernetes"):
        asyncio.run(api.aexpect("GET", "/api/v1/namespaces/x/pods", "list pods"))


def test_neither_path_follows_a_redirect(recorder: tuple[str, list[dict[str, str]]]) -> None:
    """Review finding F2: the urllib3 path (the fallback, the reconciler) followed a 307 with the token."""
    url, seen = recorder
    api = with_token(url)
    with pytest.raises(Exception, match="307"):
        api.expect("POST", "/moved", "create pod", body=POD)
    assert [request["path"] for request in seen] == ["/moved"]


def test_an_error_page_that_is_not_json_is_the_status_s_error(
    recorder: tuple[str, list[dict[str, str]]],
) -> None:
    """A proxy's HTML 502 is a temporary failure on both paths, not a JSON decoding crash."""
    url, _ = recorder
    api = with_token(url)
    with pytest.raises(TemporaryError, match="502"):
        api.expect("GET", "/proxy-page", "list pods")
    with pytest.raises(TemporaryError, match="502"):
        asyncio.run(api.aexpect("GET", "/proxy-page", "list pods"))


async def test_a_stalled_server_does_not_queue_requests_behind_its_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review finding F4: with every connection taken, a request waited for one without a limit.

    One connection, a server that never answers, a 0.3 s read timeout: the third request gave up
    after 0.9 s (three read timeouts in a row); waiting for a connection is bounded by connect + read.
    """
    monkeypatch.setattr(kube_api, "POOL_CONNECTIONS", 1)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        api = KubeApi(client.ApiClient(client.Configuration(host=url)), timeout=(0.2, 0.3))
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(api.aexpect("GET", f"/pods/{n}", "read pod") for n in range(3)), return_exceptions=True
        )
        took = time.monotonic() - started
        await api.aclose()
    assert all(isinstance(outcome, TemporaryError) for outcome in outcomes), outcomes
    assert took < 0.8, f"the last request waited {took:.2f} s"


def in_cluster(folder: Path, url: str, token: Path) -> client.Configuration:
    """The configuration `load_incluster_config` makes, for a service account token file, at `url`."""
    token.write_text("one")
    ca = Authority(folder, "in-cluster").path
    loader = InClusterConfigLoader(
        str(token), ca, environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"}
    )
    loader._token_refresh_period = datetime.timedelta(seconds=0)  # reread at every request
    loader._load_config()
    loader.host = url
    configuration = client.Configuration()
    loader._set_config(configuration)
    return configuration


def test_in_cluster_the_rotated_token_goes_on_the_loop(
    tmp_path: Path, recorder: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = recorder
    token = tmp_path / "token"
    configuration = in_cluster(tmp_path, url, token)
    assert on_the_loop(configuration), "the in-cluster refresh (a file read) does not block"
    api = KubeApi(client.ApiClient(configuration))

    def not_here(*args: Any) -> Any:
        raise AssertionError("the request went through the thread path")

    monkeypatch.setattr(api, "json", not_here)

    async def twice() -> None:
        await api.aexpect("GET", "/a", "list pods")
        token.write_text("two")  # the kubelet rotates the projected token
        await api.aexpect("GET", "/b", "list pods")
        await api.aclose()

    asyncio.run(twice())
    assert [request["authorization"] for request in seen] == ["bearer one", "bearer two"]


def test_what_aiohttp_cannot_reproduce_goes_through_the_configured_pool(
    recorder: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy, socket options, TCP keep-alive, an `assert_hostname`, and a token refresh that may
    block (a kubeconfig's exec plugin: review finding F3) stay with the official client's pool."""
    url, _ = recorder

    def exec_plugin(configuration: client.Configuration) -> None:
        time.sleep(0)  # stands for `aws eks get-token` and the like: a subprocess, on the caller's thread

    settings: list[tuple[str, Any]] = [
        ("proxy", "http://proxy.internal:3128"),
        ("assert_hostname", "api.internal"),
        ("keep_alive", True),
        ("refresh_api_key_hook", exec_plugin),
    ]
    for setting, value in settings:
        configuration = client.Configuration(host=url)
        setattr(configuration, setting, value)
        assert not on_the_loop(configuration), setting
    configuration = client.Configuration(host=url)
    configuration.socket_options = [(6, 1, 1)]
    api = KubeApi(client.ApiClient(configuration))
    through: list[str] = []

    def pooled(method: str, path: str, *rest: Any) -> tuple[int, Any]:
        through.append(path)
        return 201, {}

    monkeypatch.setattr(api, "json", pooled)
    asyncio.run(api.aexpect("POST", "/pods", "create pod", body=POD))
    assert through == ["/pods"], "socket options are the urllib3 pool's: the request must go there"
