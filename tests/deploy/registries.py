"""Registries for the tests: Debian's real `docker-registry` on a free port, and an in-memory double
(an httpx transport) that asks for a bearer token or basic auth, and can refuse cross-repository
mounts, for what the real one here is not configured to do."""

import base64
import hashlib
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bot.processes import free_port
from deploy.registry import OCI_MANIFEST, Manifest, Reference, Registry, sha256

CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


@contextmanager
def local_registry(tmp: Path) -> Iterator[str]:
    """Run `docker-registry` with its storage in `tmp` until the block ends; yield `127.0.0.1:PORT`."""
    port = free_port()
    config = tmp / "registry.yml"
    config.write_text(CONFIG.format(root=tmp / "storage", port=port))
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                said = process.communicate()[1].decode()
                raise RuntimeError(f"docker-registry did not start: {said}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def tar_layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """Return a layer of `files`: its tar (what diff_ids hash) and that tar gzipped (the blob)."""
    import gzip
    import io
    import tarfile

    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return plain.getvalue(), gzip.compress(plain.getvalue(), mtime=0)


def push_tiny_base(registry: Registry, reference: Reference, files: dict[str, bytes]) -> Manifest:
    """Push a small image (one gzipped layer of `files`) with the client itself, as a base to build on."""
    import json

    plain, layer = tar_layer(files)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["sh"], "User": "1034:1034"},
            "rootfs": {"type": "layers", "diff_ids": [sha256(plain)]},
            "history": [{"created_by": "a tiny base"}],
        }
    ).encode()
    registry.upload(reference.repository, sha256(layer), layer, len(layer))
    registry.upload(reference.repository, sha256(config), config, len(config))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    pushed = Manifest(manifest, OCI_MANIFEST, sha256(manifest))
    registry.put_manifest(reference, pushed)
    return pushed


BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
UPLOADS = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/(?P<session>[^/]*)$")
MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<tag>[^/]+)$")


@dataclass
class RegistryDouble:
    """An OCI registry in memory; with `token`, every request needs `Bearer <token>` from the realm."""

    token: str | None = None
    realm: str = "https://auth.example.com/token"
    user: tuple[str, str] | None = None  # the credentials the realm (or basic auth) takes
    basic: bool = False  # challenge with Basic instead of Bearer
    mounts: bool = True
    location: str = "/v2/{repo}/blobs/uploads/s1?_state=x"  # where a POST says the upload goes
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    token_requests: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        """Return the transport a Registry client talks to this double through."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request as a registry (or its token realm) would."""
        if request.url.host == httpx.URL(self.realm).host and request.url.path == httpx.URL(self.realm).path:
            return self._token(request)
        self.requests.append(request)
        if not self._authorized(request):
            named = re.match(r"^/v2/(.+?)/(?:blobs|manifests)/", request.url.path)
            scope = f"repository:{named[1] if named else ''}:pull,push"
            challenge = (
                'Basic realm="registry"'
                if self.basic
                else f'Bearer realm="{self.realm}",service="registry.example.com",scope="{scope}"'
            )
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return self._route(request)

    def _expected(self) -> str | None:
        if self.basic and self.user:
            return "Basic " + base64.b64encode(":".join(self.user).encode()).decode()
        return f"Bearer {self.token}" if self.token else None

    def _authorized(self, request: httpx.Request) -> bool:
        expected = self._expected()
        return expected is None or request.headers.get("Authorization") == expected

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        if self.user:
            given = "Basic " + base64.b64encode(":".join(self.user).encode()).decode()
            if request.headers.get("Authorization") != given:
                return httpx.Response(401)
        return httpx.Response(200, json={"token": self.token})

    def _route(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if match := BLOB.match(path):
            data = self.blobs.get((match["repo"], match["digest"]))
            if data is None:
                return httpx.Response(404)
            return httpx.Response(
                200, content=b"" if method == "HEAD" else data, headers={"Content-Length": str(len(data))}
            )
        if (match := UPLOADS.match(path)) and method == "POST":
            source, digest = request.url.params.get("from"), request.url.params.get("mount")
            if self.mounts and source and digest and (source, digest) in self.blobs:
                self.blobs[(match["repo"], digest)] = self.blobs[(source, digest)]
                return httpx.Response(201)
            return httpx.Response(202, headers={"Location": self.location.format(repo=match["repo"])})
        if (match := UPLOADS.match(path)) and method == "PUT":
            data, digest = request.read(), request.url.params["digest"]
            if sha256(data) != digest:
                return httpx.Response(400, text="digest mismatch")
            self.blobs[(match["repo"], digest)] = data
            return httpx.Response(201)
        if match := MANIFEST.match(path):
            return self._manifest(request, match["repo"], match["tag"])
        return httpx.Response(404)

    def _manifest(self, request: httpx.Request, repo: str, tag: str) -> httpx.Response:
        if request.method == "PUT":
            data = request.read()
            media_type = request.headers["Content-Type"]
            self.manifests[(repo, tag)] = self.manifests[(repo, sha256(data))] = (data, media_type)
            return httpx.Response(201, headers={"Docker-Content-Digest": sha256(data)})
        if (repo, tag) not in self.manifests:
            return httpx.Response(404)
        data, media_type = self.manifests[(repo, tag)]
        headers = {"Content-Type": media_type, "Docker-Content-Digest": sha256(data)}
        return httpx.Response(200, content=b"" if request.method == "HEAD" else data, headers=headers)

    def sent(self, method: str) -> list[str]:
        """Return the paths of the requests of one method the client sent."""
        return [request.url.path for request in self.requests if request.method == method]


def digest_of(data: bytes) -> str:
    """Return the sha256 digest of some bytes (the tests' own, not the client's)."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


REQUIREMENTS = b"""--index-url https://download.pytorch.org/whl/cpu
--extra-index-url https://pypi.org/simple
torch==2.13.0
numpy
pillow
pyyaml
bentoml==1.4.40
"""
BENTO_FILES = {
    "bento.yaml": b"service: model.serve:CelestialBodiesClassifier\nname: celestial_bodies_classifier\n",
    "env/python/requirements.txt": REQUIREMENTS,
    "env/docker/entrypoint.sh": b'#!/bin/sh\nexec "$@"\n',
    "models/celestial_bodies_classifier/v1/weights.pt": bytes(range(256)) * 64,
    "src/model/serve.py": b"print('served')\n",
}


def make_bento(
    path: Path, files: dict[str, bytes], mtime: int = 1_700_000_000, reverse: bool = False
) -> Path:
    """Write an exported Bento as `bentoml export` does: an xz tar of `./`-prefixed entries."""
    import io
    import tarfile

    folders = sorted({str(parent) for name in files for parent in Path(name).parents} - {"."})
    names = [*folders, *files]
    with tarfile.open(path, "w:xz") as tar:
        for name in sorted(names, reverse=reverse):
            info = tarfile.TarInfo(f"./{name}")
            info.mtime, info.uid, info.uname = mtime, 0, "root"
            if name in files:
                info.size = len(files[name])
                info.mode = 0o755 if name.endswith(".sh") else 0o600
                tar.addfile(info, io.BytesIO(files[name]))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
    return path


def oci_archive(
    path: Path, files: dict[str, bytes], corrupt: str | None = None, omit: str | None = None
) -> tuple[str, dict[str, bytes]]:
    """Write an OCI archive as `buildah push oci-archive:` does (oci-layout, index.json, blobs/sha256/)
    of a one-layer image; `corrupt` ("config" or "layer") changes that blob's bytes but not its name or
    size, `omit` leaves it out. Return the manifest's digest and the blobs by digest (the manifest's too)."""
    import io
    import json
    import tarfile

    plain, layer = tar_layer(files)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["bentoml", "serve"], "User": "1034:1034"},
            "rootfs": {"type": "layers", "diff_ids": [sha256(plain)]},
        }
    ).encode()
    described = {
        "config": ("application/vnd.oci.image.config.v1+json", config),
        "layer": ("application/vnd.oci.image.layer.v1.tar+gzip", layer),
    }
    descriptors = {
        key: {"mediaType": kind, "digest": sha256(data), "size": len(data)}
        for key, (kind, data) in described.items()
    }
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptors["config"],
            "layers": [descriptors["layer"]],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest)}],
        }
    ).encode()
    blobs = {sha256(data): data for data in (config, layer, manifest)}
    stored = dict(blobs)
    if corrupt:
        data = described[corrupt][1]
        stored[sha256(data)] = bytes(len(data))  # the same size, other bytes
    if omit:
        del stored[sha256(described[omit][1])]
    entries = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    entries |= {f"blobs/sha256/{digest.removeprefix('sha256:')}": data for digest, data in stored.items()}
    with tarfile.open(path, "w") as tar:
        for folder in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sha256(manifest), blobs
