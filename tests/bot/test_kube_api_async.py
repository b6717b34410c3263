"""The runner's Kubernetes calls on the event loop's aiohttp pool: the configuration's TLS, token, limits.

The official client's urllib3 pool is what the configuration was written for; the aiohttp path must
verify the API server as strictly, present the same client certificate and token, and leave to that
pool what it cannot reproduce.
"""

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from bot.errors import TemporaryError
from bot.kube_api import KubeApi, async_tls
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
        """Return the paths of a certificate for `names` (none: a client's) and its key."""
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

    routes = [
        Route("/moved", moved, methods=["POST"]),
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


def test_what_aiohttp_cannot_reproduce_goes_through_the_configured_pool(
    recorder: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = recorder
    for setting, value in (("proxy", "http://proxy.internal:3128"), ("assert_hostname", "api.internal")):
        configuration = client.Configuration(host=url)
        setattr(configuration, setting, value)
        assert async_tls(configuration) is None, setting
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
