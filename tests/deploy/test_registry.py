"""Appending the Bento's layer to the serving base with the registry's HTTP API: against Debian's real
`docker-registry` (the image is there, by tag, with the Bento's layer on top and the command serving
it; a second push sends no blob), and against a double for what it is not configured to do (a bearer
challenge, basic auth, a registry that cannot mount); an image outside the configured registry is
refused before any request."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.append import COMMAND, append
from deploy.layer import BENTO_PATH, build_layer
from deploy.registry import Reference, Registry, RegistryError
from tests.deploy.registries import BENTO_FILES, RegistryDouble, local_registry, make_bento, push_tiny_base

SHA = "b" * 40


@pytest.fixture(scope="module")
def registry_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


def test_the_bento_is_appended_to_the_base_and_a_second_push_sends_nothing(
    registry_host: str, tmp_path: Path
) -> None:
    base, target = (
        Reference.parse(f"{registry_host}/orbit/model-base:abc"),
        Reference.parse(f"{registry_host}/orbit/model:{SHA}"),
    )
    layer = build_layer(make_bento(tmp_path / "s.bento", BENTO_FILES), tmp_path)
    with Registry(f"{registry_host}/orbit") as registry:
        base_manifest = push_tiny_base(registry, base, {"usr/bin/sh": b"#!"})
        del registry.uploaded[:]
        first = append(registry, base, target, layer, SHA)
        assert [registry.uploaded[0], len(registry.uploaded), registry.uploaded[-1]] == [
            layer.digest,
            3,
            first.digest,
        ], "the layer, the config and the manifest; the base's layer was mounted"
    with Registry(f"{registry_host}/orbit") as again:
        second = append(again, base, target, layer, SHA)
        assert again.uploaded == [], "every blob and the tag were there: nothing is sent twice"
    assert first == second

    pulled = httpx.get(
        f"http://{registry_host}/v2/orbit/model/manifests/{SHA}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert pulled.headers["Docker-Content-Digest"] == first.digest
    manifest = pulled.json()
    base_layers = json.loads(base_manifest.data)["layers"]
    assert manifest["layers"][:-1] == base_layers and manifest["layers"][-1]["digest"] == layer.digest
    config = httpx.get(f"http://{registry_host}/v2/orbit/model/blobs/{manifest['config']['digest']}").json()
    assert config["rootfs"]["diff_ids"][-1] == layer.diff_id and len(config["rootfs"]["diff_ids"]) == 2
    assert config["config"]["Entrypoint"] == COMMAND and "Cmd" not in config["config"]
    assert COMMAND[:3] == ["bentoml", "serve", str(BENTO_PATH)] and COMMAND[-2:] == ["--port", "3000"]
    assert config["config"]["User"] == "1034:1034", "the base's user stays"
    assert config["config"]["Labels"]["org.opencontainers.image.revision"] == SHA
    blob = httpx.get(f"http://{registry_host}/v2/orbit/model/blobs/{layer.digest}")
    assert blob.content == layer.path.read_bytes()


def test_an_image_outside_the_configured_registry_is_refused_before_any_request(tmp_path: Path) -> None:
    double = RegistryDouble()
    layer = build_layer(make_bento(tmp_path / "s.bento", BENTO_FILES), tmp_path)
    inside = Reference.parse(f"registry.example.com/orbit/model:{SHA}")
    with Registry("registry.example.com/orbit", transport=double.transport()) as registry:
        for outside in (
            "evil.example.com/orbit/model-base:abc",
            "registry.example.com/others/model-base:abc",
        ):
            with pytest.raises(RegistryError, match="not in the configured registry"):
                append(registry, Reference.parse(outside), inside, layer, SHA)
            with pytest.raises(RegistryError, match="not in the configured registry"):
                append(registry, inside, Reference.parse(outside), layer, SHA)
    assert double.requests == [] and double.token_requests == []


def test_a_401_with_a_bearer_challenge_is_followed_with_the_credentials_to_the_realm(tmp_path: Path) -> None:
    double = RegistryDouble(token="t0ken", user=("robot", "s3cret"))
    base, target = (
        Reference.parse("registry.example.com/orbit/model-base:abc"),
        Reference.parse(f"registry.example.com/orbit/model:{SHA}"),
    )
    with Registry(
        "registry.example.com/orbit", ("robot", "s3cret"), transport=double.transport()
    ) as registry:
        push_tiny_base(registry, base, {"bin/sh": b"#!"})
        layer = build_layer(make_bento(tmp_path / "s.bento", BENTO_FILES), tmp_path)
        appended = append(registry, base, target, layer, SHA)
    assert double.manifests[("orbit/model", SHA)][0] == double.manifests[("orbit/model", appended.digest)][0]
    [first, *_] = double.token_requests
    assert first.url.params["service"] == "registry.example.com"
    assert first.url.params["scope"] == "repository:orbit/model-base:pull,push"
    assert first.headers["Authorization"].startswith("Basic "), "the credentials go to the realm"
    assert all(r.headers.get("Authorization") in (None, "Bearer t0ken") for r in double.requests)
    assert len(double.token_requests) <= 4, "a token per repository, not per request"


def test_a_realm_that_is_not_https_gets_no_credentials() -> None:
    double = RegistryDouble(token="t0ken", realm="http://auth.example.com/token", user=("robot", "s3cret"))
    with (
        Registry("registry.example.com/orbit", ("robot", "s3cret"), transport=double.transport()) as registry,
        pytest.raises(RegistryError, match="not HTTPS"),
    ):
        registry.manifest(Reference.parse("registry.example.com/orbit/model-base:abc"))
    assert double.token_requests == []


def test_basic_auth_and_a_registry_that_cannot_mount_copies_the_base_s_blobs(tmp_path: Path) -> None:
    double = RegistryDouble(user=("robot", "s3cret"), basic=True, mounts=False)
    base, target = (
        Reference.parse("registry.example.com/orbit/model-base:abc"),
        Reference.parse(f"registry.example.com/orbit/model:{SHA}"),
    )
    with Registry(
        "registry.example.com/orbit", ("robot", "s3cret"), transport=double.transport()
    ) as registry:
        base_manifest = push_tiny_base(registry, base, {"bin/sh": b"#!"})
        layer = build_layer(make_bento(tmp_path / "s.bento", BENTO_FILES), tmp_path)
        append(registry, base, target, layer, SHA)
    [base_layer] = json.loads(base_manifest.data)["layers"]
    assert (
        double.blobs[("orbit/model", base_layer["digest"])]
        == double.blobs[("orbit/model-base", base_layer["digest"])]
    )
    assert any(path == f"/v2/orbit/model-base/blobs/{base_layer['digest']}" for path in double.sent("GET"))


def test_without_credentials_a_challenge_is_answered_by_an_anonymous_token_or_the_401_stays() -> None:
    anonymous = RegistryDouble(token="anon")
    with Registry("registry.example.com/orbit", transport=anonymous.transport()) as registry:
        with pytest.raises(RegistryError, match="orbit/none:1 is not in the registry"):
            registry.manifest(Reference.parse("registry.example.com/orbit/none:1"))
        assert "Authorization" not in anonymous.token_requests[0].headers
    refused = RegistryDouble(user=("robot", "s3cret"), basic=True)
    with (
        Registry("registry.example.com/orbit", transport=refused.transport()) as registry,
        pytest.raises(RegistryError, match="401"),
    ):
        registry.manifest(Reference.parse("registry.example.com/orbit/none:1"))


@pytest.mark.parametrize(
    "text", ["model:1", "registry.example.com/model", "registry.example.com/Model:1", "r.example.com/m:1;rm"]
)
def test_a_reference_needs_a_host_a_lowercase_repository_and_a_tag(text: str) -> None:
    with pytest.raises(RegistryError, match="not an image reference"):
        Reference.parse(text)
