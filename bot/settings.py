"""The bot's configuration: `ORBIT_*` environment variables, read once at start-up."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where each required setting comes from in a cluster installed by docs/install.md: a missing one is
# named with the Secret and key to create.
FROM_SECRET = {
    "ORBIT_GITHUB_APP_ID": "key app-id of the Secret orbit-github-app",
    "ORBIT_GITHUB_PRIVATE_KEY": "key private-key.pem of the Secret orbit-github-app",
    "ORBIT_WEBHOOK_SECRET": "key webhook-secret of the Secret orbit-github-app",
    "ORBIT_DATABASE_URL": "key url of the Secret orbit-database",
}


class SettingsError(ValueError):
    """A required setting is missing or malformed; the message names it and never shows a value."""


class Settings(BaseSettings):
    """Everything the bot reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="ORBIT_", extra="ignore", frozen=True)

    github_app_id: int = Field(gt=0)
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    webhook_secret: SecretStr = Field(min_length=1)
    github_api_url: str = "https://api.github.com"
    database_url: str = "sqlite:///orbit.db"
    kube_namespace: str = "orbit-runners"  # the runner pods' namespace
    runner_image: str = "ghcr.io/orbit/runner-gpu:latest"  # the GPU runner class's image
    cpu_runner_image: str = "ghcr.io/orbit/runner-cpu:latest"  # the CPU runner class's image
    build_namespace: str = "orbit-builds"  # the privileged build runners' namespace (fallback builds)
    gpu_resource: str = "nvidia.com/gpu"
    max_gpu_runners: int = Field(default=4, ge=0)
    runner_group_id: int = Field(default=0, ge=0)  # an organisation runner group; 0: on the repository
    registry: str = ""
    public_domain: str = ""
    webhook_path: str = "/webhook"
    workers: int = Field(default=8, ge=1)
    max_attempts: int = Field(default=6, ge=1)
    lease_seconds: float = Field(default=60.0, gt=0)  # renewed while a handler runs
    max_handler_seconds: float = Field(default=3600.0, gt=0)  # past it a handler is stuck
    runners_enabled: bool = True
    reconcile_seconds: float = Field(default=60.0, gt=0)
    pending_limit_seconds: float = Field(default=600.0, gt=0)
    models_namespace: str = "models"
    model_service: str = Field(
        default="", pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"
    )  # "": the model's name
    tls_issuer: str = ""
    ingress_class: str = ""
    rollout_deadline_seconds: float = Field(default=600.0, gt=0)
    image_pull_secret: str = ""  # a docker-registry Secret in the models' namespace, for a private registry
    model_api_key_secret: str = ""  # a Secret in the models' namespace whose key the endpoint checks
    redeliver_interval_seconds: float = Field(default=300.0, ge=0)  # 0: never ask GitHub to redeliver
    redeliver_limit: int = Field(default=20, ge=0)  # redeliveries asked for in one pass at most
    log_format: Literal["json", "text"] = "json"

    @field_validator("github_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_private_key(self) -> "Settings":
        if self.github_private_key is None and self.github_private_key_path is None:
            raise ValueError(
                "ORBIT_GITHUB_PRIVATE_KEY or ORBIT_GITHUB_PRIVATE_KEY_PATH is required"
                f" (in the cluster: {FROM_SECRET['ORBIT_GITHUB_PRIVATE_KEY']})"
            )
        return self

    def private_key(self) -> str:
        """Return the App's PEM key, from the variable or the file."""
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value()
        assert self.github_private_key_path is not None
        try:
            return self.github_private_key_path.read_text()
        except OSError as error:
            raise SettingsError(
                f"ORBIT_GITHUB_PRIVATE_KEY_PATH: cannot read the key ({error.strerror})"
            ) from error


def load_settings() -> Settings:
    """Read the settings, or raise `SettingsError` with one line naming each bad variable."""
    try:
        return Settings()
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            field = "_".join(str(part) for part in issue["loc"])
            name = f"ORBIT_{field.upper()}" if field else ""
            reason = (
                "is required" if issue["type"] == "missing" else issue["msg"].removeprefix("Value error, ")
            )
            where = f" (in the cluster: {FROM_SECRET[name]})" if name in FROM_SECRET else ""
            problems.append(f"{name} {reason}{where}".strip())
        raise SettingsError("bad configuration: " + "; ".join(problems)) from None
