"""The model's image without a build: the serving base's manifest with one more layer, the Bento.

The base's layers are the registry's already (mounted into the model's repository, or copied when the
registry cannot mount); what is new is the Bento's layer, an image config (the base's, with the layer's
diff id, a history line, and the command that serves the Bento) and the manifest naming them. Nothing
runs: no `RUN`, no container engine, no privileges.

A full build's image comes as an OCI archive (a tar: `oci-layout`, `index.json`, `blobs/sha256/...`)
that a job without the credential made from what the pull request wrote. `push_archive` pushes it as
data, with the same client: the index only says which manifest; the manifest and every blob it names
are checked against their digests and sizes as they are read, and capped, before anything is sent.
"""

import hashlib
import json
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from deploy.layer import BENTO_PATH, MAX_MEMBERS, MAX_TOTAL_BYTES, Layer
from deploy.registry import (
    CHUNK,
    DOCKER_MANIFEST,
    MANIFESTS,
    Manifest,
    Reference,
    Registry,
    RegistryError,
    sha256,
)

PORT = 3000  # bentoml serve's; deploy/manifests.py exposes it
COMMAND = ["bentoml", "serve", str(BENTO_PATH), "--host", "0.0.0.0", "--port", str(PORT)]  # noqa: S104
LAYER_TYPES = {
    DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REVISION = "org.opencontainers.image.revision"
MAX_IMAGE_BYTES = MAX_TOTAL_BYTES  # an archive's blobs together (a CPU-only image is far below)
MAX_JSON_BYTES = 4 * 1024 * 1024  # index.json, oci-layout, a manifest
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ArchiveError(ValueError):
    """The OCI archive cannot be pushed as it is; the message says why."""


@dataclass(frozen=True)
class Appended:
    """The image a deploy pushed: its reference by tag and its manifest's digest."""

    reference: Reference
    digest: str


def _canonical(value: dict[str, Any]) -> bytes:
    """Return JSON whose bytes depend only on the value: the same image gives the same digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def image_config(base: dict[str, Any], layer: Layer, sha: str) -> bytes:
    """Return the base's image config with the Bento's layer on top and the command serving it."""
    config = json.loads(json.dumps(base))  # a deep copy of plain JSON
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), layer.diff_id]
    config["history"] = [
        *config.get("history", []),
        {"created_by": f"orbit: the Bento's files in {BENTO_PATH} ({sha})", "comment": "appended by orbit"},
    ]
    runtime = config.setdefault("config", {})
    runtime["Entrypoint"] = COMMAND
    runtime.pop("Cmd", None)
    runtime["WorkingDir"] = str(BENTO_PATH)
    runtime["ExposedPorts"] = {**(runtime.get("ExposedPorts") or {}), f"{PORT}/tcp": {}}
    runtime["Labels"] = {**(runtime.get("Labels") or {}), REVISION: sha}
    return _canonical(config)


def image_manifest(base: Manifest, config: bytes, layer: Layer) -> Manifest:
    """Return the base's manifest with the new config and the Bento's layer appended."""
    manifest = base.parsed()
    manifest["config"] = {**manifest["config"], "digest": sha256(config), "size": len(config)}
    added = {
        "mediaType": LAYER_TYPES.get(base.media_type, OCI_LAYER),
        "digest": layer.digest,
        "size": layer.size,
    }
    manifest["layers"] = [*manifest.get("layers", []), added]
    manifest.setdefault("mediaType", base.media_type)
    data = _canonical(manifest)
    return Manifest(data, base.media_type, sha256(data))


def append(registry: Registry, base: Reference, target: Reference, layer: Layer, sha: str) -> Appended:
    """Push `base` plus the Bento's layer as `target`; blobs the registry has are not sent again."""
    registry.check(base)
    registry.check(target)
    try:
        manifest = registry.manifest(base)
    except RegistryError as error:
        raise RegistryError(f"{error}: serving-base.yml builds the base when its lock changes") from error
    parsed = manifest.parsed()
    base_config = json.loads(registry.blob(base.repository, parsed["config"]["digest"]))
    if not isinstance(base_config, dict):
        raise RegistryError(f"the image config of {base} is not a JSON object")
    config = image_config(base_config, layer, sha)
    for base_layer in parsed.get("layers", []):
        registry.copy_blob(base.repository, target.repository, base_layer["digest"])
    with layer.path.open("rb") as file:
        registry.upload(target.repository, layer.digest, file, layer.size)
    registry.upload(target.repository, sha256(config), config, len(config))
    appended = image_manifest(manifest, config, layer)
    return Appended(target, registry.put_manifest(target, appended))


@dataclass(frozen=True)
class _Descriptor:
    """A blob an OCI descriptor names: its digest and size, as checked to be well formed."""

    digest: str
    size: int

    @classmethod
    def of(cls, value: object, what: str) -> "_Descriptor":
        """Read a descriptor (a JSON object with `digest` and `size`), refusing a malformed one."""
        if not isinstance(value, dict):
            raise ArchiveError(f"the archive's {what} is not a descriptor")
        digest, size = value.get("digest"), value.get("size")
        if not isinstance(digest, str) or not DIGEST.match(digest):
            raise ArchiveError(f"the archive's {what} names no sha256 digest: {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ArchiveError(f"the archive's {what} has no size")
        return cls(digest, size)


def _entries(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Return the archive's files by path, refusing links, devices, sparse files and a path twice."""
    entries: dict[str, tarfile.TarInfo] = {}
    for count, member in enumerate(archive, start=1):
        if count > MAX_MEMBERS:
            raise ArchiveError(f"the archive holds more than {MAX_MEMBERS} entries")
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise ArchiveError(f"the archive's entry {member.name!r} reaches outside it")
        if member.isdir():
            continue
        if not member.isfile() or member.issparse():
            raise ArchiveError(f"the archive's entry {member.name!r} is not a plain file")
        name = str(PurePosixPath(*[part for part in path.parts if part != "."]))
        if name in entries:
            raise ArchiveError(f"the archive names {name} twice")
        entries[name] = member
    return entries


def _copy_checked(
    archive: tarfile.TarFile, entries: dict[str, tarfile.TarInfo], blob: _Descriptor, file: IO[bytes] | None
) -> None:
    """Read a blob of the archive (into `file`, if any), checked against its descriptor's size and digest."""
    name = f"blobs/sha256/{blob.digest.removeprefix('sha256:')}"
    member = entries.get(name)
    if member is None:
        raise ArchiveError(f"the archive lacks the blob {blob.digest} its manifest names")
    if member.size != blob.size:
        raise ArchiveError(f"the blob {blob.digest} is {member.size} bytes, not the {blob.size} named")
    extracted = archive.extractfile(member)
    if extracted is None:
        raise ArchiveError(f"the archive's blob {blob.digest} cannot be read")
    hashed, size = hashlib.sha256(), 0
    while chunk := extracted.read(min(CHUNK, blob.size + 1 - size)):
        hashed.update(chunk)
        size += len(chunk)
        if file is not None:
            file.write(chunk)
        if size > blob.size:
            break
    if size != blob.size or f"sha256:{hashed.hexdigest()}" != blob.digest:
        raise ArchiveError(f"the archive's blob {blob.digest} does not match its digest")


def _read_small(archive: tarfile.TarFile, entries: dict[str, tarfile.TarInfo], name: str) -> bytes:
    """Return a small file of the archive (index.json, oci-layout), refused over MAX_JSON_BYTES."""
    member = entries.get(name)
    if member is None:
        raise ArchiveError(f"the archive has no {name}: not an OCI archive")
    extracted = archive.extractfile(member)
    if member.size > MAX_JSON_BYTES or extracted is None:
        raise ArchiveError(f"the archive's {name} is over {MAX_JSON_BYTES} bytes")
    return extracted.read(MAX_JSON_BYTES)


def _json(data: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object of the archive."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArchiveError(f"the archive's {what} is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise ArchiveError(f"the archive's {what} is not a JSON object")
    return value


def _archive_manifest(
    archive: tarfile.TarFile, entries: dict[str, tarfile.TarInfo], max_total: int
) -> tuple[Manifest, list[_Descriptor]]:
    """Return the archive's one image manifest (checked) and the blobs it names (config first)."""
    layout = _json(_read_small(archive, entries, "oci-layout"), "oci-layout")
    if layout.get("imageLayoutVersion") != "1.0.0":
        raise ArchiveError(f"the archive's oci-layout is {layout}, not version 1.0.0")
    listed = _json(_read_small(archive, entries, "index.json"), "index.json").get("manifests")
    if not isinstance(listed, list) or len(listed) != 1 or not isinstance(listed[0], dict):
        raise ArchiveError("the archive's index.json does not name exactly one manifest")
    media_type = listed[0].get("mediaType")
    if media_type not in MANIFESTS:
        raise ArchiveError(f"the archive's manifest is a {media_type}, not an image manifest")
    named = _Descriptor.of(listed[0], "index.json's manifest")
    if named.size > MAX_JSON_BYTES:
        raise ArchiveError(f"the archive's manifest is over {MAX_JSON_BYTES} bytes")
    with tempfile.TemporaryFile() as file:
        _copy_checked(archive, entries, named, file)
        file.seek(0)
        data = file.read()
    parsed = _json(data, "manifest")
    if parsed.get("mediaType", media_type) != media_type:
        raise ArchiveError(f"the archive's manifest says {parsed.get('mediaType')}, its index {media_type}")
    layers = parsed.get("layers")
    if not isinstance(layers, list):
        raise ArchiveError("the archive's manifest has no layers")
    blobs = [_Descriptor.of(parsed.get("config"), "config")]
    blobs += [_Descriptor.of(layer, f"layer {number}") for number, layer in enumerate(layers, start=1)]
    if sum(blob.size for blob in blobs) > max_total:
        raise ArchiveError(f"the archive's image is over {max_total} bytes")
    return Manifest(data, str(media_type), named.digest), blobs


def push_archive(
    registry: Registry, archive: Path, target: Reference, max_total: int = MAX_IMAGE_BYTES
) -> Appended:
    """Push an OCI archive's one image as `target`: every blob checked as read, then the manifest.

    The archive is data: nothing of it runs, no container engine loads it. Every blob is read and
    checked before the first is sent (a bad archive pushes nothing), then each is copied out again,
    checked again, and uploaded from that copy (the registry checks the digest a third time).
    """
    registry.check(target)
    with tarfile.open(archive, "r:*") as tar:
        entries = _entries(tar)
        manifest, blobs = _archive_manifest(tar, entries, max_total)
        unique = list(dict.fromkeys(blobs))
        for blob in unique:
            _copy_checked(tar, entries, blob, None)
        for blob in unique:
            with tempfile.TemporaryFile() as file:
                _copy_checked(tar, entries, blob, file)
                registry.upload(target.repository, blob.digest, file, blob.size)
    return Appended(target, registry.put_manifest(target, manifest))
