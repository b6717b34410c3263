"""A client of a container registry's HTTP API (the OCI distribution spec), just what a deploy needs.

It reads a manifest and a blob, uploads a blob the registry lacks (a HEAD first: what is there is never
sent twice), copies a blob from one repository to another (a mount, else a download and an upload),
and puts a manifest. It talks to one configured registry only, and logs in as registries ask: a bearer
token from the realm a 401's `WWW-Authenticate` names, or basic auth, with the credentials given.
The credentials (and a token) go only to the registry's own origin (its scheme, host and port) and to
the HTTPS realm a 401 of that origin names: never to a Location or a redirect's target elsewhere, nor
to a realm named by a 401 that came from another host (storage a blob was redirected to).
"""

import base64
import hashlib
import json
import re
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from typing import IO, Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
LOOPBACK = {"localhost", "127.0.0.1", "[::1]"}
REFERENCE = re.compile(
    r"^(?P<host>[a-zA-Z0-9.-]+(?::[0-9]+)?|\[::1\](?::[0-9]+)?)/(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
CHUNK = 1024 * 1024
TIMEOUT = httpx.Timeout(30.0, read=300.0, write=300.0)
DEFAULT_PORTS = {"http": 80, "https": 443}


class RegistryError(RuntimeError):
    """The registry refused or answered something unusable; the message says what."""


@dataclass(frozen=True)
class Reference:
    """An image in a registry: `host/repository` with a tag or a digest."""

    host: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> "Reference":
        """Read `host[:port]/repository[:tag][@digest]`; the digest wins over the tag."""
        match = REFERENCE.match(text)
        if not match or not (match["tag"] or match["digest"]):
            raise RegistryError(f"{text!r} is not an image reference with a registry host and a tag")
        return cls(match["host"], match["repository"], match["digest"] or match["tag"])

    def __str__(self) -> str:
        """Return the reference as a container engine reads it."""
        separator = "@" if self.tag.startswith("sha256:") else ":"
        return f"{self.host}/{self.repository}{separator}{self.tag}"


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry holds it: its bytes, media type and digest."""

    data: bytes
    media_type: str
    digest: str

    def parsed(self) -> dict[str, Any]:
        """Return the manifest's JSON."""
        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise RegistryError("the registry answered a manifest that is not a JSON object")
        return value


def sha256(data: bytes) -> str:
    """Return the OCI digest of some bytes."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Return a URL's origin: its scheme, host and port (the scheme's default port when it names none)."""
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme)


def within(reference: Reference, registry: str) -> bool:
    """Return whether an image lies under the configured registry (`host[/namespace]`)."""
    prefix = registry.rstrip("/")
    return f"{reference.host}/{reference.repository}".startswith(f"{prefix}/")


class RegistryAuth(httpx.Auth):
    """Answer a registry's 401: a bearer token from its realm, or basic auth, then the request again.

    The header is kept per repository, since a token's scope names one; a request to a repository
    whose header is known goes with it at once (a streamed upload cannot be sent twice). Both only for
    the registry's own origin: a request elsewhere goes without it, and a 401 from elsewhere (where a
    redirect led) is not answered, so its realm gets no credentials.
    """

    def __init__(
        self, credentials: tuple[str, str] | None, allow_plain_realm: bool, registry: httpx.URL
    ) -> None:
        self.credentials = credentials
        self.allow_plain_realm = allow_plain_realm
        self.origin = origin(registry)
        self.headers: dict[str, str] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send the request with its repository's header; on a 401, log in as challenged and resend."""
        if origin(request.url) != self.origin:
            request.headers.pop("Authorization", None)
            yield request  # not the registry: no header of ours, and its 401 stays a 401
            return
        repository = _repository(request.url.path)
        if repository in self.headers:
            request.headers["Authorization"] = self.headers[repository]
        response = yield request
        if response.status_code != 401 or origin(response.request.url) != self.origin:
            return  # a 401 of where a redirect led (blob storage) names no realm we trust
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", maxsplit=1)[0].lower()
        if scheme == "bearer":
            token_response = yield self._token_request(challenge)
            token_response.read()
            header = f"Bearer {self._token(token_response)}"
        elif scheme == "basic" and self.credentials:
            header = _basic(self.credentials)
        else:
            return
        self.headers[repository] = request.headers["Authorization"] = header
        yield request

    def _token_request(self, challenge: str) -> httpx.Request:
        """Return the request for a token from the challenge's realm, with the credentials if any."""
        fields = dict(CHALLENGE.findall(challenge))
        realm = httpx.URL(fields.get("realm", ""))
        if realm.scheme != "https" and not (self.allow_plain_realm and realm.host in LOOPBACK):
            raise RegistryError(f"the registry's token realm {realm} is not HTTPS: no credentials go there")
        params = {key: fields[key] for key in ("service", "scope") if key in fields}
        headers = {}
        if self.credentials:
            headers["Authorization"] = _basic(self.credentials)
        return httpx.Request("GET", realm, params=params, headers=headers)

    @staticmethod
    def _token(response: httpx.Response) -> str:
        """Return the token a realm answered."""
        if response.status_code != 200:
            raise RegistryError(f"the registry's token realm answered {response.status_code}")
        body = response.json()
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError("the registry's token realm answered no token")
        return token


class Registry:
    """The HTTP API of the one registry a deploy may push to."""

    def __init__(
        self,
        registry: str,
        credentials: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.registry = registry.rstrip("/")
        host = self.registry.split("/", maxsplit=1)[0]
        plain = host.rsplit(":", maxsplit=1)[0] in LOOPBACK  # a registry on this machine: no TLS
        self.base_url = httpx.URL(f"{'http' if plain else 'https'}://{host}")
        self.client = httpx.Client(
            base_url=self.base_url,
            auth=RegistryAuth(credentials, allow_plain_realm=plain, registry=self.base_url),
            timeout=TIMEOUT,
            follow_redirects=True,  # blobs are often served from storage elsewhere; httpx drops the
            transport=transport,  #  Authorization header when a redirect leaves the registry's origin
        )
        self.host = host
        self.uploaded: list[str] = []  # the digests of the blobs this client sent

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def own(self, url: httpx.URL) -> httpx.URL:
        """Return a URL the registry named (a Location), refusing another origin or plain HTTP."""
        if origin(url) != origin(self.base_url):
            raise RegistryError(
                f"the registry sent the upload to {url.scheme}://{url.netloc.decode()}, not to"
                f" {self.base_url}: another origin (or plain HTTP) gets neither the blob nor the credentials"
            )
        return url

    def check(self, reference: Reference) -> None:
        """Refuse an image outside the configured registry: the credentials go nowhere else."""
        if reference.host != self.host or not within(reference, self.registry):
            raise RegistryError(f"{reference} is not in the configured registry {self.registry}")

    def _request(self, method: str, url: str, ok: tuple[int, ...], **kwargs: Any) -> httpx.Response:
        """Send one request and return its response, or raise with what the registry said."""
        response = self.client.request(method, url, **kwargs)
        if response.status_code not in ok:
            detail = response.text[:300] if method != "HEAD" else ""
            raise RegistryError(f"{method} {url} answered {response.status_code} {detail}".rstrip())
        return response

    def manifest(self, reference: Reference, platform: tuple[str, str] = ("linux", "amd64")) -> Manifest:
        """Return an image's manifest; for a multi-platform index, the manifest of `platform`."""
        self.check(reference)
        manifest = self._manifest(reference.repository, reference.tag)
        if manifest.media_type in INDEXES:
            chosen = [
                entry["digest"]
                for entry in manifest.parsed().get("manifests", [])
                if (entry.get("platform", {}).get("os"), entry.get("platform", {}).get("architecture"))
                == platform
            ]
            if not chosen:
                raise RegistryError(f"{reference} has no {'/'.join(platform)} image")
            manifest = self._manifest(reference.repository, chosen[0])
        if manifest.media_type not in MANIFESTS:
            raise RegistryError(f"{reference} is a {manifest.media_type}, not an image manifest")
        return manifest

    def _manifest(self, repository: str, tag: str) -> Manifest:
        """GET one manifest, checked against its digest when it was asked for by digest."""
        accept = ", ".join((*MANIFESTS, *INDEXES))
        response = self.client.get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": accept})
        if response.status_code == 404:
            raise RegistryError(f"{self.host}/{repository}:{tag} is not in the registry")
        if response.status_code != 200:
            raise RegistryError(f"GET of the manifest {repository}:{tag} answered {response.status_code}")
        data = response.content
        digest = sha256(data)
        if tag.startswith("sha256:") and digest != tag:
            raise RegistryError(f"the manifest {repository}@{tag} does not match its digest")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(data, json.loads(data).get("mediaType") or media_type, digest)

    def manifest_digest(self, repository: str, tag: str, media_type: str) -> str | None:
        """Return the digest a tag points to now, or None when there is no such tag."""
        response = self.client.head(f"/v2/{repository}/manifests/{tag}", headers={"Accept": media_type})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(f"HEAD of the manifest {repository}:{tag} answered {response.status_code}")
        digest = response.headers.get("Docker-Content-Digest")
        return str(digest) if digest else None

    def blob(self, repository: str, digest: str, max_bytes: int = 4 * 1024 * 1024) -> bytes:
        """Return a small blob (an image config), checked against its digest."""
        with self.client.stream("GET", f"/v2/{repository}/blobs/{digest}") as response:
            if response.status_code != 200:
                raise RegistryError(f"GET of the blob {repository}@{digest} answered {response.status_code}")
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise RegistryError(f"the blob {digest} is larger than {max_bytes} bytes")
        if sha256(data) != digest:
            raise RegistryError(f"the blob {repository}@{digest} does not match its digest")
        return data

    def has_blob(self, repository: str, digest: str) -> bool:
        """Return whether the repository holds the blob."""
        response = self.client.head(f"/v2/{repository}/blobs/{digest}")
        if response.status_code not in (200, 404):
            raise RegistryError(f"HEAD of the blob {repository}@{digest} answered {response.status_code}")
        return response.status_code == 200

    def upload(self, repository: str, digest: str, content: IO[bytes] | bytes, size: int) -> None:
        """Upload a blob the repository lacks, in one PUT; skip it when the repository has it."""
        if self.has_blob(repository, digest):
            return
        started = self._request("POST", f"/v2/{repository}/blobs/uploads/", (202,))
        self._finish(started, digest, content, size)

    def _finish(self, started: httpx.Response, digest: str, content: IO[bytes] | bytes, size: int) -> None:
        """PUT the blob to the upload session a POST started: at the registry's own origin only."""
        location = started.headers.get("Location")
        if not location:
            raise RegistryError("the registry started an upload without a Location")
        url = self.own(started.url.join(location)).copy_merge_params({"digest": digest})
        if not isinstance(content, bytes):
            content.seek(0)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        body = content if isinstance(content, bytes) else _chunks(content)
        self._request("PUT", str(url), (201,), content=body, headers=headers)
        self.uploaded.append(digest)

    def copy_blob(self, source: str, repository: str, digest: str) -> None:
        """Put a blob of another repository of the registry into this one: a mount, else a copy."""
        if source == repository or self.has_blob(repository, digest):
            return
        mounted = self._request(
            "POST", f"/v2/{repository}/blobs/uploads/", (201, 202), params={"mount": digest, "from": source}
        )
        if mounted.status_code == 201:
            return  # the registry linked the blob it has: nothing was sent
        with tempfile.TemporaryFile() as file:
            size = self._download(source, digest, file)
            self._finish(mounted, digest, file, size)

    def _download(self, repository: str, digest: str, file: IO[bytes]) -> int:
        """Download a blob into a file, checked against its digest; return its size."""
        hashed, size = hashlib.sha256(), 0
        with self.client.stream("GET", f"/v2/{repository}/blobs/{digest}") as response:
            if response.status_code != 200:
                raise RegistryError(f"GET of the blob {repository}@{digest} answered {response.status_code}")
            for chunk in response.iter_bytes(CHUNK):
                hashed.update(chunk)
                size += len(chunk)
                file.write(chunk)
        if f"sha256:{hashed.hexdigest()}" != digest:
            raise RegistryError(f"the blob {repository}@{digest} does not match its digest")
        return size

    def put_manifest(self, reference: Reference, manifest: Manifest) -> str:
        """Tag a manifest (unless the tag already names it) and return its digest."""
        self.check(reference)
        if self.manifest_digest(reference.repository, reference.tag, manifest.media_type) == manifest.digest:
            return manifest.digest
        self._request(
            "PUT",
            f"/v2/{reference.repository}/manifests/{reference.tag}",
            (201,),
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        self.uploaded.append(manifest.digest)
        return manifest.digest


def _repository(path: str) -> str:
    """Return the repository a request of the API is about ("" for the API's root)."""
    match = re.match(r"^/v2/(.+?)/(?:blobs|manifests|tags)/", path)
    return match[1] if match else ""


def _basic(credentials: tuple[str, str]) -> str:
    """Return the basic-auth header of a user and password."""
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def _chunks(file: IO[bytes]) -> Generator[bytes, None, None]:
    """Yield a file's bytes in chunks, for a streamed upload."""
    while chunk := file.read(CHUNK):
        yield chunk
