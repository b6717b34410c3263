"""Per-repository options from `.github/orbit.yml`, read from the base branch, validated with clear errors.

Training paths and workflow, metric gates, runner classes per workflow, deploy policy and the
previews' time to live. The runner and deploy flows read the same file, so it lives in the core.

The file is checked twice: first against the JSON schema orbit ships (`bot/schemas/orbit.schema.json`,
generated from these models by `python -m bot.repo_config`), whose errors carry the YAML line of the
offending node; then by the models themselves. A test keeps the two in agreement.
"""

import functools
import json
import re
import sys
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from bot.config_lines import Problem, problems_of, yaml_problem

CONFIG_PATH = ".github/orbit.yml"
MAX_BYTES = 64 * 1024  # of the file: a configuration is a few hundred bytes
MAX_TTL_HOURS = 24 * 365
DEFAULT_PATHS = ("dvc.yaml", "params.yaml", "model/**", "data/**.dvc")
SCHEMA_ID = "https://github.com/orbit-mlops/orbit/blob/main/bot/schemas/orbit.schema.json"
METRIC = r"[A-Za-z_][A-Za-z0-9_./-]*"  # "val_acc", "per_class.star.f1"
NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
OPERATORS = (">=", "<=", "==", ">", "<")  # the two-character ones first: a regex tries them in order
THRESHOLD = rf"^\s*({METRIC})\s*(>=|<=|==|>|<)\s*({NUMBER})\s*$"
WORKFLOW_FILE = r"^[A-Za-z0-9_.-]+\.ya?ml$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?([numkMGTPE]|[KMGTPE]i)?$"  # a Kubernetes quantity: "8", "500m", "32Gi"


class RepoConfigError(ValueError):
    """`.github/orbit.yml` is not valid; the message says where and why, one line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(problem.describe(CONFIG_PATH) for problem in problems))


def _hinted(hint: str, pattern: str) -> Any:
    """Return a string constraint whose schema carries a hint for the error message ("a comparison ...")."""
    return Field(pattern=pattern, json_schema_extra={"x-orbit-hint": hint})


Threshold = Annotated[str, _hinted("a comparison like 'val_acc >= 0.90'", THRESHOLD)]
MetricName = Annotated[str, _hinted("a metric name like 'val_f1'", rf"^{METRIC}$")]
WorkflowFile = Annotated[str, _hinted("a workflow file name like 'train.yml'", WORKFLOW_FILE)]


def _quantity_text(value: object) -> object:
    """Read `cpu: 8` (a YAML number) as the quantity "8", as Kubernetes does."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _no_boolean(value: object) -> object:
    """Refuse `gpus: yes` as JSON schema does: YAML's booleans are not numbers."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


Count = Annotated[int, Field(ge=0), BeforeValidator(_no_boolean)]
Positive = Annotated[int, Field(ge=1), BeforeValidator(_no_boolean)]
Quantity = Annotated[
    str,
    StringConstraints(pattern=QUANTITY),
    BeforeValidator(_quantity_text),
    WithJsonSchema(
        {
            "type": ["string", "number"],
            "pattern": QUANTITY,
            "minimum": 0,
            "x-orbit-hint": "a Kubernetes quantity like '8', '500m' or '32Gi'",
        }
    ),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingConfig(_Section):
    """The `training` section: which changes train, with which workflow."""

    paths: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=lambda: list(DEFAULT_PATHS), min_length=1
    )
    workflow: WorkflowFile = "train.yml"


class GatesConfig(_Section):
    """The `gates` section: what a training run must show for its check to pass and to ship."""

    thresholds: list[Threshold] = Field(default_factory=list)  # "val_acc >= 0.90": metric, operator, number
    no_significant_regression: list[MetricName] = Field(default_factory=list)  # metric names


class RunnerSpec(_Section):
    """One runner class's pod for one workflow; unset fields keep the installation's defaults."""

    cpu: Quantity | None = None  # a Kubernetes quantity: "8", "500m"
    memory: Quantity | None = None  # "32Gi"
    gpus: Count | None = None
    gpu_type: str | None = Field(default=None, min_length=1)  # a name of the installation's ORBIT_GPU_TYPES
    timeout_minutes: Positive | None = None


class DeployConfig(_Section):
    """The `deploy` section: when production ships, how long previews live."""

    production: Literal["on_merge", "on_command"] = "on_merge"
    preview_ttl_hours: Annotated[int, Field(ge=1, le=MAX_TTL_HOURS), BeforeValidator(_no_boolean)] = 72


def _workflow_keys(schema: dict[str, Any]) -> None:
    """Say in the schema what the models check: each key of `runners` is a workflow file."""
    schema["propertyNames"] = {
        "pattern": WORKFLOW_FILE,
        "x-orbit-hint": "a workflow file name like 'train.yml'",
    }


class RepoConfig(_Section):
    """The whole file."""

    training: TrainingConfig = Field(default_factory=TrainingConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    runners: dict[Annotated[str, StringConstraints(pattern=WORKFLOW_FILE)], dict[str, RunnerSpec]] = Field(
        default_factory=dict, json_schema_extra=_workflow_keys
    )  # workflow file -> runner label -> spec
    deploy: DeployConfig = Field(default_factory=DeployConfig)


def json_schema() -> dict[str, Any]:
    """Return the JSON schema (draft 2020-12) of `.github/orbit.yml`, generated from the models."""
    schema = RepoConfig.model_json_schema()
    runners = schema["properties"]["runners"]
    runners["additionalProperties"] = runners.pop("patternProperties").popitem()[1]  # keys: propertyNames
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": CONFIG_PATH,
        "description": "orbit's per-repository options; see docs/configuration.md",
    }


@functools.cache
def shipped_schema() -> dict[str, Any]:
    """Return the schema file orbit ships (the same as `json_schema()`: a test keeps them equal)."""
    text = resources.files("bot.schemas").joinpath("orbit.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def parse_config(text: str | None) -> RepoConfig:
    """Return the options of a repository; a missing file means the defaults.

    Raises `RepoConfigError` with the line and reason of each problem: YAML syntax, then the
    shipped JSON schema, then the models (which should find nothing the schema let through).
    """
    if text is None or not text.strip():
        return RepoConfig()
    if len(text.encode()) > MAX_BYTES:
        raise RepoConfigError([Problem(0, 0, "", f"over {MAX_BYTES // 1024} KiB: not a configuration file")])
    try:
        nodes = yaml.compose(text, Loader=_PlainLoader)
        document = yaml.load(text, Loader=_PlainLoader)  # noqa: S506 - a SafeLoader without aliases
    except yaml.YAMLError as error:
        raise RepoConfigError([yaml_problem(error)]) from None
    found = problems_of(shipped_schema(), document if document is not None else {}, nodes)
    if found:
        raise RepoConfigError(found)
    try:
        return RepoConfig.model_validate(document or {})
    except ValidationError as error:
        raise RepoConfigError([_model_problem(e) for e in error.errors()]) from None


class _PlainLoader(yaml.SafeLoader):
    """YAML without aliases.

    A few hundred bytes of nested aliases expand exponentially wherever the document is walked
    (a schema error's message prints the value whole), so they are refused where they appear.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in orbit's configuration", event.start_mark
            )
        return super().compose_node(parent, index)


def _model_problem(error: Any) -> Problem:
    return Problem(0, 0, ".".join(map(str, error["loc"])), str(error["msg"]))


def threshold_parts(threshold: str) -> tuple[str, str, float]:
    """Split a threshold into metric, operator and number: "val_acc >= 0.9" -> ("val_acc", ">=", 0.9)."""
    match = re.match(THRESHOLD, threshold)
    if match is None:
        raise ValueError(f"{threshold!r} is not a comparison like 'val_acc >= 0.90'")
    return match[1], match[2], float(match[3])


def schema_text() -> str:
    """Return the schema file's text: `python -m bot.repo_config > bot/schemas/orbit.schema.json`."""
    return json.dumps(json_schema(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
