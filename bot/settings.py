"""The bot's configuration: `ORBIT_*` environment variables, read once at start-up.

What stops start-up (a missing or malformed setting, a private key that is not one) is a
`SettingsError`; what only leaves a feature off or a variable unread (a half-configured deploy, a
mistyped name) is one of `Settings.warnings()`, which `orbit serve` logs and `orbit doctor` prints.
"""

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from kubernetes.utils.quantity import parse_quantity
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where each required setting comes from in a cluster installed by docs/install.md: a missing one is
# named with the Secret and key to create.
FROM_SECRET = {
    "ORBIT_GITHUB_APP_ID": "key app-id of the Secret orbit-github-app",
    "ORBIT_GITHUB_PRIVATE_KEY": "key private-key.pem of the Secret orbit-github-app",
    "ORBIT_WEBHOOK_SECRET": "key webhook-secret of the Secret orbit-github-app",
    "ORBIT_DATABASE_URL": "key url of the Secret orbit-database",
}

# `ORBIT_*` variables that are not settings of the bot but are read by orbit's other tools: the
# registry login of `orbit deploy build`, scripts/base-image, and the repository's tests and benchmarks.
OTHER_VARIABLES = frozenset(
    {
        "ORBIT_REGISTRY_USER",
        "ORBIT_REGISTRY_PASSWORD",
        "ORBIT_BASE_IMAGE",
        "ORBIT_TEST_POSTGRES_URL",
        "ORBIT_UPDATE_GOLDEN",
    }
)
OTHER_PREFIXES = ("ORBIT_BENCH_",)
# The settings that only matter to one feature: set while the feature is off, they do nothing.
DEPLOY_SETTINGS = (
    "models_namespace",
    "model_service",
    "tls_issuer",
    "ingress_class",
    "rollout_deadline_seconds",
    "image_pull_secret",
    "model_api_key_secret",
)
RUNNER_SETTINGS = (
    "kube_namespace",
    "runner_image",
    "cpu_runner_image",
    "build_runner_image",
    "build_namespace",
    "gpu_resource",
    "gpu_node_selector",
    "gpu_tolerations",
    "gpu_runtime_class",
    "max_gpu_runners",
    "runner_group_id",
    "reconcile_seconds",
    "pending_limit_seconds",
    "dvc_cache_claim",
    "max_runner_cpu",
    "max_runner_memory",
    "max_runner_timeout_minutes",
)
GPU_SETTINGS = (
    "runner_image",
    "gpu_resource",
    "gpu_node_selector",
    "gpu_tolerations",
    "gpu_runtime_class",
    "gpu_types",
    "max_runner_gpus",
)
KUBE_NAME = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"
PEM_HINT = "the whole .pem file GitHub gave for the App, from its -----BEGIN line to its -----END line"


def variable(field: str) -> str:
    """Return the environment variable of a setting: `tls_issuer` -> `ORBIT_TLS_ISSUER`."""
    return f"ORBIT_{field.upper()}"


POSTGRES_ROLE = r"[a-z_][a-z0-9_]{0,62}"  # a role name that needs no quoting


class SettingsError(ValueError):
    """A required setting is missing or malformed; the message names it and never shows a value."""


class GpuType(BaseModel):
    """One kind of GPU node a repository may ask for by name (`gpu_type` in `.github/orbit.yml`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: list[dict[str, str]] = Field(default_factory=list)


class Settings(BaseSettings):
    """Everything the bot reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="ORBIT_", extra="ignore", frozen=True)

    github_app_id: int | None = Field(default=None, gt=0)  # required where deliveries are handled
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    webhook_secret: SecretStr = Field(min_length=1)
    github_api_url: str = "https://api.github.com"
    database_url: str = "sqlite:///orbit.db"
    kube_namespace: str = "orbit-runners"  # the runner pods' namespace
    runner_image: str = "ghcr.io/orbit/runner-gpu:latest"  # the GPU runner class's image
    cpu_runner_image: str = "ghcr.io/orbit/runner-cpu:latest"  # the CPU runner class's image
    build_namespace: str = ""  # the privileged build runners' namespace (fallback builds); "": none
    build_runner_image: str = "ghcr.io/orbit/runner-build:latest"  # the CPU runner with buildah
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_selector: dict[str, str] = {}  # JSON: the labels of the nodes GPU runner pods go to
    gpu_tolerations: list[dict[str, str]] = []  # JSON: taints of the GPU nodes (the GPU resource's is added)
    gpu_runtime_class: str = ""  # the RuntimeClass that exposes the GPUs (the GPU Operator's `nvidia`)
    max_gpu_runners: int = Field(default=4, ge=0)  # GPUs runner pods hold at once (a pod with 2 counts 2)
    runner_group_id: int = Field(default=0, ge=0)  # an organisation runner group; 0: on the repository
    # a ReadWriteMany PVC in the runners' namespace: each repository's DVC cache and wheels; "": none
    dvc_cache_claim: str = Field(default="", pattern=KUBE_NAME)
    # the most a repository's `.github/orbit.yml` may ask of a runner pod (more is clamped to it)
    max_runner_cpu: str = "8"
    max_runner_memory: str = "32Gi"
    max_runner_gpus: int = Field(default=1, ge=0)
    max_runner_timeout_minutes: int = Field(default=360, ge=1, le=24 * 60)
    # JSON: name -> {"nodeSelector": {...}, "tolerations": [...]}, the GPU types a repository may name
    gpu_types: dict[str, GpuType] = {}
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
    )  # "": each repository's own names (<repository>-<hash>); set: one name, for a one-repository install
    tls_issuer: str = ""
    ingress_class: str = ""
    rollout_deadline_seconds: float = Field(default=600.0, gt=0)
    image_pull_secret: str = ""  # a docker-registry Secret in the models' namespace, for a private registry
    model_api_key_secret: str = ""  # a Secret in the models' namespace whose key the endpoint checks
    redeliver_interval_seconds: float = Field(default=300.0, ge=0)  # 0: never ask GitHub to redeliver
    redeliver_limit: int = Field(default=20, ge=0)  # redeliveries asked for in one pass at most
    log_format: Literal["json", "text"] = "json"
    # What a process runs: the webhook ingest, the workers (and periodic jobs), or both (one process).
    role: Literal["all", "ingest", "worker"] = "all"
    retention_days: float = Field(default=14.0, gt=0)  # handled deliveries are deleted after this long
    worker_poll_seconds: float = Field(default=0.2, gt=0)  # a worker process without ingest polls
    # PostgreSQL: the role an ingest process connects as; the workers grant it only what it does
    ingest_database_role: str = Field(default="", pattern=f"^({POSTGRES_ROLE})?$")

    @field_validator("github_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _without_surrounding_space(cls, value: object) -> object:
        # A Secret made from a file (`echo secret > webhook-secret`) ends with a newline GitHub never
        # signs with: kept, it would turn every delivery into a 401.
        return value.strip() if isinstance(value, str) else value

    @field_validator("max_runner_cpu", "max_runner_memory")
    @classmethod
    def _quantity(cls, value: str) -> str:
        try:
            positive = parse_quantity(value) > 0
        except ValueError:
            positive = False
        if not positive:
            raise ValueError(f"must be a Kubernetes quantity above zero (like 8, 500m, 32Gi), not {value!r}")
        return value

    @field_validator("gpu_types")
    @classmethod
    def _gpu_type_names(cls, value: dict[str, GpuType]) -> dict[str, GpuType]:
        wrong = [name for name in value if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,62}", name)]
        if wrong:
            raise ValueError(f"GPU type names are lowercase letters, digits, '.' and '-': not {wrong}")
        return value

    @model_validator(mode="after")
    def _the_app_where_deliveries_are_handled(self) -> "Settings":
        # An ingest process only verifies and stores: it acts as no App, so it needs neither.
        missing = [] if self.role == "ingest" else self._missing_app()
        if missing:
            raise ValueError("; ".join(missing))
        return self

    def _missing_app(self) -> list[str]:
        missing = []
        if self.github_app_id is None:
            missing.append(
                f"ORBIT_GITHUB_APP_ID is required (in the cluster: {FROM_SECRET['ORBIT_GITHUB_APP_ID']})"
            )
        if self.github_private_key is None and self.github_private_key_path is None:
            missing.append(
                "ORBIT_GITHUB_PRIVATE_KEY or ORBIT_GITHUB_PRIVATE_KEY_PATH is required"
                f" (in the cluster: {FROM_SECRET['ORBIT_GITHUB_PRIVATE_KEY']})"
            )
        return missing

    def app_id(self) -> int:
        """Return the App's id; raise `SettingsError` where it is not set (an ingest process's settings)."""
        if self.github_app_id is None:
            raise SettingsError(self._missing_app()[0])
        return self.github_app_id

    @model_validator(mode="after")
    def _build_runners_in_a_restricted_group(self) -> "Settings":
        # A runner registered on the repository takes any queued job whose labels match, a fork's
        # workflow's included: a privileged build runner must be in a group restricted to deploy.yml.
        if self.build_namespace and not self.runner_group_id:
            raise ValueError(
                "ORBIT_BUILD_NAMESPACE needs ORBIT_RUNNER_GROUP_ID: privileged build runners registered on"
                " the repository could be taken by any workflow's job; create a runner group restricted to"
                " orbit's workflows (docs/install.md, step 6) and set its id"
            )
        return self

    @model_validator(mode="after")
    def _shared_cache_in_a_restricted_group(self) -> "Settings":
        # The shared cache is writable in the orbit-data pods; a runner registered on the repository
        # takes any queued job whose labels match, a pull request's own workflow's included, which
        # would then write what later runs trust.
        if self.dvc_cache_claim and not self.runner_group_id:
            raise ValueError(
                "ORBIT_DVC_CACHE_CLAIM needs ORBIT_RUNNER_GROUP_ID: the runners that write the shared cache,"
                " registered on the repository, could be taken by any workflow's job; create a runner group"
                " restricted to orbit's workflows (docs/install.md, step 6) and set its id"
            )
        return self

    def private_key(self) -> str:
        """Return the App's PEM key, from the variable or the file, once it parses as a private key."""
        if self.github_private_key is not None:
            return _parsed(self.github_private_key.get_secret_value(), "ORBIT_GITHUB_PRIVATE_KEY")
        if self.github_private_key_path is None:
            raise SettingsError(self._missing_app()[-1])
        try:
            text = self.github_private_key_path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not a text file"
            where = FROM_SECRET["ORBIT_GITHUB_PRIVATE_KEY"]
            raise SettingsError(
                f"ORBIT_GITHUB_PRIVATE_KEY_PATH: the key file is unreadable ({reason}; in the cluster:"
                f" {where})"
            ) from None
        return _parsed(text, f"ORBIT_GITHUB_PRIVATE_KEY_PATH ({self.github_private_key_path})")

    def warnings(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Return one line per setting that does nothing: mistyped, unread, or of a feature that is off."""
        environ = os.environ if environ is None else environ
        return [*unknown_variables(environ), *self._half_configured()]

    def _half_configured(self) -> list[str]:
        problems = []
        if self.registry and not self.public_domain:
            problems.append(
                "ORBIT_REGISTRY is set but ORBIT_PUBLIC_DOMAIN is not: deploys stay off"
                " (set ORBIT_PUBLIC_DOMAIN to the domain the models are served under)"
            )
        elif self.public_domain and not self.registry:
            problems.append(
                "ORBIT_PUBLIC_DOMAIN is set but ORBIT_REGISTRY is not: deploys stay off"
                " (set ORBIT_REGISTRY to where the model images are pushed, e.g. ghcr.io/octo-org)"
            )
        if self.ingest_database_role and not self.database_url.startswith("postgresql"):
            problems.append(
                "ORBIT_INGEST_DATABASE_ROLE is set but the database is not PostgreSQL: it does nothing"
            )
        deploys_off = not (self.registry and self.public_domain)
        problems += self._unused(DEPLOY_SETTINGS, deploys_off, "deploys are off", DEPLOYS_ON)
        problems += self._unused(RUNNER_SETTINGS, not self.runners_enabled, "runners are off", RUNNERS_ON)
        no_gpus = self.runners_enabled and self.max_gpu_runners == 0
        problems += self._unused(
            GPU_SETTINGS, no_gpus, "ORBIT_MAX_GPU_RUNNERS=0 starts no GPU runner", GPUS_ON
        )
        if self.github_private_key is not None and self.github_private_key_path is not None:
            problems.append(
                "ORBIT_GITHUB_PRIVATE_KEY and ORBIT_GITHUB_PRIVATE_KEY_PATH are both set:"
                " the first is used (unset one of them)"
            )
        if self.redeliver_interval_seconds == 0 and "redeliver_limit" in self.model_fields_set:
            problems.append(
                "ORBIT_REDELIVER_LIMIT does nothing: ORBIT_REDELIVER_INTERVAL_SECONDS=0 turns redelivery off"
            )
        return problems

    def _unused(self, fields: tuple[str, ...], off: bool, why: str, fix: str) -> list[str]:
        """Return a line for each of `fields` set while its feature is `off`."""
        if not off:
            return []
        return [
            f"{variable(name)} does nothing: {why} ({fix})"
            for name in fields
            if name in self.model_fields_set
        ]


DEPLOYS_ON = "deploys need ORBIT_REGISTRY and ORBIT_PUBLIC_DOMAIN"
RUNNERS_ON = "ORBIT_RUNNERS_ENABLED=false turns them off"
GPUS_ON = "training jobs wait until it is above 0"


def known_variables() -> list[str]:
    """Return the `ORBIT_*` variables orbit reads: the settings and those of its other tools."""
    return sorted({variable(name) for name in Settings.model_fields} | OTHER_VARIABLES)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Return a line for each `ORBIT_*` variable orbit does not read, with the nearest name it knows."""
    known = known_variables()
    lines = []
    for name in sorted(environ):
        if not name.startswith("ORBIT_") or name in known or name.startswith(OTHER_PREFIXES):
            continue
        nearest = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {nearest[0]}?" if nearest else "it is ignored"
        lines.append(f"{name} is not a setting orbit knows; {hint}")
    return lines


def _parsed(text: str, source: str) -> str:
    """Return `text` if it is an unencrypted PEM private key; else name `source`, never the text."""
    try:
        load_pem_private_key(text.encode(), password=None)
    except TypeError:
        raise SettingsError(f"{source} is an encrypted private key: give it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        escaped = "\\n" in text and "\n" not in text.strip()
        hint = " (it has \\n where its line breaks should be)" if escaped else ""
        raise SettingsError(f"{source} is not a PEM private key{hint}: give {PEM_HINT}") from None
    return text


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
