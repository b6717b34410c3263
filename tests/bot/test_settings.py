from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.settings import (
    DEPLOY_SETTINGS,
    GPU_SETTINGS,
    RUNNER_SETTINGS,
    Settings,
    SettingsError,
    load_settings,
)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# GitHub hands out PKCS#1 ("BEGIN RSA PRIVATE KEY"); a converted key is PKCS#8 ("BEGIN PRIVATE KEY").
PKCS1, PKCS8 = (
    KEY.private_bytes(serialization.Encoding.PEM, layout, serialization.NoEncryption()).decode()
    for layout in (serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8)
)
REQUIRED = {
    "ORBIT_GITHUB_APP_ID": "12345",
    "ORBIT_GITHUB_PRIVATE_KEY": PKCS1,
    "ORBIT_WEBHOOK_SECRET": "s3cr3t-value",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [*REQUIRED, "ORBIT_GITHUB_PRIVATE_KEY_PATH", "ORBIT_GITHUB_API_URL", "ORBIT_DATABASE_URL"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_settings_are_read_with_defaults(env: pytest.MonkeyPatch) -> None:
    env.setenv("ORBIT_GITHUB_API_URL", "https://ghe.example.com/api/v3/")
    settings = load_settings()
    assert settings.github_app_id == 12345
    assert settings.github_api_url == "https://ghe.example.com/api/v3"
    assert settings.database_url.startswith("sqlite")
    assert settings.private_key() == PKCS1


@pytest.mark.parametrize("name", list(REQUIRED))
def test_a_missing_setting_is_named_in_one_line(env: pytest.MonkeyPatch, name: str) -> None:
    env.delenv(name)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert name in message


@pytest.mark.parametrize(
    ("name", "secret", "key"),
    [
        ("ORBIT_GITHUB_APP_ID", "orbit-github-app", "app-id"),
        ("ORBIT_GITHUB_PRIVATE_KEY", "orbit-github-app", "private-key.pem"),
        ("ORBIT_WEBHOOK_SECRET", "orbit-github-app", "webhook-secret"),
    ],
)
def test_a_missing_secret_names_the_kubernetes_secret_and_key_to_create(
    env: pytest.MonkeyPatch, name: str, secret: str, key: str
) -> None:
    env.delenv(name)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"key {key} of the Secret {secret}" in str(caught.value)


def test_a_malformed_setting_is_named_and_no_secret_is_shown(env: pytest.MonkeyPatch) -> None:
    env.setenv("ORBIT_GITHUB_APP_ID", "not-a-number")
    env.setenv("ORBIT_GITHUB_API_URL", "ftp://nope")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "ORBIT_GITHUB_APP_ID" in message
    assert "ORBIT_GITHUB_API_URL" in message
    assert "s3cr3t-value" not in message
    assert "PRIVATE KEY" not in message


def test_secrets_are_masked_in_the_settings_repr(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert "s3cr3t-value" not in repr(settings)
    assert "PRIVATE KEY" not in repr(settings)


def test_private_key_from_a_missing_file_is_a_clear_error(env: pytest.MonkeyPatch) -> None:
    env.delenv("ORBIT_GITHUB_PRIVATE_KEY")
    env.setenv("ORBIT_GITHUB_PRIVATE_KEY_PATH", "/nonexistent/key.pem")
    with pytest.raises(SettingsError, match="ORBIT_GITHUB_PRIVATE_KEY_PATH"):
        load_settings().private_key()


@pytest.mark.parametrize("key", [PKCS1, PKCS8])
def test_a_pem_private_key_is_taken_from_the_variable_or_the_file(
    env: pytest.MonkeyPatch, tmp_path: Path, key: str
) -> None:
    env.setenv("ORBIT_GITHUB_PRIVATE_KEY", key)
    assert load_settings().private_key() == key
    (tmp_path / "key.pem").write_text(key)
    env.delenv("ORBIT_GITHUB_PRIVATE_KEY")
    env.setenv("ORBIT_GITHUB_PRIVATE_KEY_PATH", str(tmp_path / "key.pem"))
    assert load_settings().private_key() == key


PUBLIC_KEY = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
ENCRYPTED = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(b"passphrase"),
).decode()


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("s3cr3t-not-a-key", "is not a PEM private key: give the whole .pem file"),
        (PKCS1[:200], "is not a PEM private key"),  # cut short by a copy and paste
        (PKCS1.replace("\n", "\\n"), "it has \\n where its line breaks should be"),
        (PUBLIC_KEY, "is not a PEM private key"),
        (ENCRYPTED, "is an encrypted private key: give it without a passphrase"),
    ],
)
def test_a_key_that_is_not_a_pem_private_key_stops_start_up_naming_the_variable_never_the_key(
    env: pytest.MonkeyPatch, key: str, says: str
) -> None:
    env.setenv("ORBIT_GITHUB_PRIVATE_KEY", key)
    with pytest.raises(SettingsError) as caught:
        load_settings().private_key()
    message = str(caught.value)
    assert message.startswith("ORBIT_GITHUB_PRIVATE_KEY ")
    assert says in message
    assert "\n" not in message
    assert key[:40] not in message
    assert key[-40:] not in message


def test_a_key_file_that_is_not_a_key_names_the_variable_and_the_file(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "key.pem").write_text("s3cr3t-not-a-key")
    env.delenv("ORBIT_GITHUB_PRIVATE_KEY")
    env.setenv("ORBIT_GITHUB_PRIVATE_KEY_PATH", str(tmp_path / "key.pem"))
    with pytest.raises(SettingsError) as caught:
        load_settings().private_key()
    assert str(caught.value).startswith(
        f"ORBIT_GITHUB_PRIVATE_KEY_PATH ({tmp_path / 'key.pem'}) is not a PEM"
    )
    assert "s3cr3t" not in str(caught.value)


def settings(**values: object) -> Settings:
    """Return settings as read from the environment would be: the fields given count as set."""
    return Settings.model_validate(
        {"github_app_id": 1, "github_private_key": PKCS1, "webhook_secret": "s", **values}
    )


@pytest.mark.parametrize(
    ("environ", "warning"),
    [
        (
            {"ORBIT_WEBHOOK_SECRT": "x"},
            "ORBIT_WEBHOOK_SECRT is not a setting orbit knows; did you mean ORBIT_WEBHOOK_SECRET?",
        ),
        ({"ORBIT_PUBLIC_DOMIAN": "x"}, "did you mean ORBIT_PUBLIC_DOMAIN?"),
        ({"ORBIT_RUNNER_IMGE": "x"}, "did you mean ORBIT_RUNNER_IMAGE?"),
        ({"ORBIT_XYZZY": "x"}, "ORBIT_XYZZY is not a setting orbit knows; it is ignored"),
    ],
)
def test_an_unknown_orbit_variable_is_named_with_the_nearest_known_name(
    environ: dict[str, str], warning: str
) -> None:
    environment = {"PATH": "/bin", "ORBIT_WEBHOOK_SECRET": "s", **environ}
    (line,) = settings().warnings(environment)
    assert warning in line


def test_the_variables_of_orbits_other_tools_and_the_settings_are_not_warned_about() -> None:
    environment = {
        "ORBIT_REGISTRY_USER": "u",
        "ORBIT_REGISTRY_PASSWORD": "p",
        "ORBIT_BENCH_IMAGE": "x",
        "ORBIT_MAX_GPU_RUNNERS": "2",
        "ORBITAL": "not ours",
    }
    assert settings().warnings(environment) == []


def test_the_warnings_of_settings_read_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("ORBIT_WEBHOOK_SECRT", "x")
    env.setenv("ORBIT_REGISTRY", "ghcr.io/octo-org")
    env.delenv("ORBIT_PUBLIC_DOMAIN", raising=False)
    warnings = load_settings().warnings()
    assert any("did you mean ORBIT_WEBHOOK_SECRET?" in line for line in warnings)
    assert any(line.startswith("ORBIT_REGISTRY is set but ORBIT_PUBLIC_DOMAIN") for line in warnings)


@pytest.mark.parametrize(
    ("values", "warning"),
    [
        (
            {"registry": "ghcr.io/octo-org"},
            "ORBIT_REGISTRY is set but ORBIT_PUBLIC_DOMAIN is not: deploys stay off",
        ),
        (
            {"public_domain": "models.example.com"},
            "ORBIT_PUBLIC_DOMAIN is set but ORBIT_REGISTRY is not: deploys stay off",
        ),
        ({"tls_issuer": "letsencrypt"}, "ORBIT_TLS_ISSUER does nothing: deploys are off"),
        ({"image_pull_secret": "pull"}, "ORBIT_IMAGE_PULL_SECRET does nothing: deploys are off"),
        (
            {"runners_enabled": False, "runner_group_id": 7},
            "ORBIT_RUNNER_GROUP_ID does nothing: runners are off",
        ),
        (
            {"runners_enabled": False, "gpu_runtime_class": "nvidia"},
            "ORBIT_GPU_RUNTIME_CLASS does nothing: runners are off",
        ),
        (
            {"max_gpu_runners": 0, "gpu_node_selector": {"gpu": "h200"}},
            "ORBIT_GPU_NODE_SELECTOR does nothing: ORBIT_MAX_GPU_RUNNERS=0 starts no GPU runner",
        ),
        (
            {"github_private_key_path": "/k.pem"},
            "ORBIT_GITHUB_PRIVATE_KEY and ORBIT_GITHUB_PRIVATE_KEY_PATH are both set: the first is used",
        ),
        (
            {"redeliver_interval_seconds": 0, "redeliver_limit": 5},
            "ORBIT_REDELIVER_LIMIT does nothing: ORBIT_REDELIVER_INTERVAL_SECONDS=0 turns redelivery off",
        ),
    ],
)
def test_a_half_configured_feature_is_one_warning_naming_what_is_missing(
    values: dict[str, object], warning: str
) -> None:
    (line,) = settings(**values).warnings({})
    assert line.startswith(warning)


def test_a_whole_configuration_has_no_warning() -> None:
    whole = settings(
        registry="ghcr.io/octo-org",
        public_domain="models.example.com",
        tls_issuer="letsencrypt",
        image_pull_secret="pull",
        runner_group_id=7,
        gpu_node_selector={"gpu": "h200"},
        redeliver_limit=5,
    )
    assert whole.warnings({}) == []
    assert settings().warnings({}) == []


def test_each_feature_names_settings_that_exist() -> None:
    assert {*DEPLOY_SETTINGS, *RUNNER_SETTINGS, *GPU_SETTINGS} <= set(Settings.model_fields)


def test_privileged_build_runners_need_a_restricted_runner_group(env: pytest.MonkeyPatch) -> None:
    """Registered on the repository, a privileged build runner could be taken by any workflow's job."""
    env.setenv("ORBIT_BUILD_NAMESPACE", "orbit-builds")
    with pytest.raises(SettingsError, match="ORBIT_BUILD_NAMESPACE needs ORBIT_RUNNER_GROUP_ID"):
        load_settings()
    env.setenv("ORBIT_RUNNER_GROUP_ID", "7")
    assert load_settings().build_namespace == "orbit-builds"


def test_the_build_runners_are_off_unless_asked_for(env: pytest.MonkeyPatch) -> None:
    assert load_settings().build_namespace == ""


def test_a_webhook_secret_from_a_file_loses_its_newline(env: pytest.MonkeyPatch) -> None:
    env.setenv("ORBIT_WEBHOOK_SECRET", "s3cr3t-value\n")
    assert load_settings().webhook_secret.get_secret_value() == "s3cr3t-value"
