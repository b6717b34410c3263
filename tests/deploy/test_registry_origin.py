"""The registry's credentials go to its own origin (scheme, host, port) and to the realm a 401 of that
origin names, nowhere else: an upload Location on plain HTTP or another host is refused before the
blob (and the cached Authorization) leaves, and a 401 from where a redirect led (blob storage) is not
answered, so the realm it names gets no password. Each attack is made against the registry double;
every request any host received is inspected."""

import base64

import httpx
import pytest

from deploy.registry import Reference, Registry, RegistryError
from tests.deploy.registries import RegistryDouble, digest_of

USER = ("robot", "s3cret")
BASIC = "Basic " + base64.b64encode(b"robot:s3cret").decode()
HOST = "registry.example.com"
BLOB = b"a layer's bytes"


OWN = {("https", HOST, None), ("https", "auth.example.com", None)}  # the registry, the realm it names


def leaked(requests: list[httpx.Request]) -> list[str]:
    """Return each request with an Authorization header to an origin not the registry's or its realm's."""
    return [
        f"{request.method} {request.url}"
        for request in requests
        if (request.url.scheme, request.url.host, request.url.port) not in OWN
        and "Authorization" in request.headers
    ]


@pytest.mark.parametrize(
    "location",
    [
        "http://registry.example.com/v2/{repo}/blobs/uploads/s1?_state=x",  # cleartext, the same host
        "https://uploads.example.com/v2/{repo}/blobs/uploads/s1?_state=x",  # another host
        "https://registry.example.com:8443/v2/{repo}/blobs/uploads/s1",  # another port
        "//uploads.example.com/v2/{repo}/blobs/uploads/s1",  # another host, scheme-relative
    ],
)
@pytest.mark.parametrize("basic", [True, False], ids=["basic", "bearer"])
def test_an_upload_location_of_another_origin_is_refused_and_gets_no_credentials(
    location: str, basic: bool
) -> None:
    double = RegistryDouble(token="t0ken", user=USER, basic=basic, location=location)
    with (
        Registry(f"{HOST}/orbit", USER, transport=double.transport()) as registry,
        pytest.raises(RegistryError, match="another origin"),
    ):
        registry.upload("orbit/model", digest_of(BLOB), BLOB, len(BLOB))
    assert leaked(double.requests + double.token_requests) == []
    assert [request.url.host for request in double.requests] == [HOST] * len(double.requests)
    assert registry.uploaded == [] and double.blobs == {}


@pytest.mark.parametrize(
    "location",
    [
        "/v2/{repo}/blobs/uploads/s1?_state=x",
        "s1?_state=x",  # relative to the POST's URL, /v2/{repo}/blobs/uploads/
        "https://registry.example.com:443/v2/{repo}/blobs/uploads/s1?_state=x",
    ],
)
def test_an_upload_location_of_the_registry_s_own_origin_is_followed(location: str) -> None:
    double = RegistryDouble(user=USER, basic=True, location=location)
    with Registry(f"{HOST}/orbit", USER, transport=double.transport()) as registry:
        registry.upload("orbit/model", digest_of(BLOB), BLOB, len(BLOB))
        assert registry.uploaded == [digest_of(BLOB)]
    assert double.blobs == {("orbit/model", digest_of(BLOB)): BLOB}
    [put] = [request for request in double.requests if request.method == "PUT"]
    assert put.url.path == "/v2/orbit/model/blobs/uploads/s1" and put.headers["Authorization"] == BASIC


def test_a_401_from_where_a_blob_redirect_led_does_not_send_the_password_to_its_realm() -> None:
    """The registry redirects a blob to storage; the storage answers 401 naming an evil realm."""
    double = RegistryDouble(user=USER, basic=True)
    elsewhere: list[httpx.Request] = []
    digest = digest_of(BLOB)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == HOST:
            if request.method == "GET" and request.url.path == f"/v2/orbit/model/blobs/{digest}":
                double.requests.append(request)
                if request.headers.get("Authorization") != BASIC:
                    return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})
                return httpx.Response(307, headers={"Location": "https://storage.example.net/blob/1"})
            return double.handle(request)
        elsewhere.append(request)
        if request.url.host == "storage.example.net":
            challenge = 'Bearer realm="https://evil.example.net/token",service="x",scope="y"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, json={"token": "evil"})

    with Registry(f"{HOST}/orbit", USER, transport=httpx.MockTransport(handle)) as registry:
        assert not registry.has_blob("orbit/model", digest)  # logs in: the Basic header is cached
        with pytest.raises(RegistryError, match="answered 401"):
            registry.blob("orbit/model", digest)
    assert [request.url.host for request in elsewhere] == ["storage.example.net"], "no request to the realm"
    assert leaked(elsewhere) == [] and leaked(double.requests) == []


def test_a_bearer_challenge_of_the_registry_itself_still_sends_the_credentials_to_its_realm() -> None:
    double = RegistryDouble(token="t0ken", user=USER)
    with Registry(f"{HOST}/orbit", USER, transport=double.transport()) as registry:
        assert not registry.has_blob("orbit/model", digest_of(BLOB))
        with pytest.raises(RegistryError, match="not in the registry"):
            registry.manifest(Reference.parse(f"{HOST}/orbit/model:1"))
    [token_request] = double.token_requests  # one token for the repository, kept
    assert token_request.url.host == "auth.example.com" and token_request.headers["Authorization"] == BASIC
    assert all(request.headers.get("Authorization") in (None, "Bearer t0ken") for request in double.requests)


@pytest.mark.parametrize(
    "url",
    [
        "http://registry.example.com/v2/orbit/model/blobs/uploads/s1",
        "https://uploads.example.com/v2/orbit/model/blobs/uploads/s1",
    ],
)
def test_the_cached_header_goes_with_no_request_to_another_origin(url: str) -> None:
    """Beneath the Location check: the client itself attaches the header to the registry's origin only."""
    double = RegistryDouble(user=USER, basic=True)
    with Registry(f"{HOST}/orbit", USER, transport=double.transport()) as registry:
        assert not registry.has_blob("orbit/model", digest_of(BLOB))  # logs in: the header is cached
        answered = registry.client.put(url, content=BLOB)
    assert answered.status_code == 401, "another origin's 401 is not answered either"
    assert [request.url for request in double.requests][-1] == httpx.URL(url)
    assert leaked(double.requests) == [] and double.requests[-1].headers.get("Authorization") is None
