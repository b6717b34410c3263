"""The model's image without a build: the serving base's manifest with one more layer, the Bento.

The base's layers are the registry's already (mounted into the model's repository, or copied when the
registry cannot mount); what is new is the Bento's layer, an image config (the base's, with the layer's
diff id, a history line, and the command that serves the Bento) and the manifest naming them. Nothing
runs: no `RUN`, no container engine, no privileges.
"""

import json
from dataclasses import dataclass
from typing import Any

from deploy.layer import BENTO_PATH, Layer
from deploy.registry import DOCKER_MANIFEST, Manifest, Reference, Registry, RegistryError, sha256

PORT = 3000  # bentoml serve's; deploy/manifests.py exposes it
COMMAND = ["bentoml", "serve", str(BENTO_PATH), "--host", "0.0.0.0", "--port", str(PORT)]  # noqa: S104
LAYER_TYPES = {
    DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REVISION = "org.opencontainers.image.revision"


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
