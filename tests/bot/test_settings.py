import pytest

from bot.settings import SettingsError, load_settings

REQUIRED = {
    "ORBIT_GITHUB_APP_ID": "12345",
    "ORBIT_GITHUB_PRIVATE_KEY": "-----BEGIN KEY-----",
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
    assert settings.private_key() == "-----BEGIN KEY-----"


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
    assert "BEGIN KEY" not in message


def test_secrets_are_masked_in_the_settings_repr(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert "s3cr3t-value" not in repr(settings)
    assert "BEGIN KEY" not in repr(settings)


def test_private_key_from_a_missing_file_is_a_clear_error(env: pytest.MonkeyPatch) -> None:
    env.delenv("ORBIT_GITHUB_PRIVATE_KEY")
    env.setenv("ORBIT_GITHUB_PRIVATE_KEY_PATH", "/nonexistent/key.pem")
    with pytest.raises(SettingsError, match="ORBIT_GITHUB_PRIVATE_KEY_PATH"):
        load_settings().private_key()
