"""`.github/orbit.yml`: the shipped JSON schema and the models agree, and every error names its line."""

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from bot.repo_config import (
    RepoConfig,
    RepoConfigError,
    json_schema,
    parse_config,
    schema_text,
    shipped_schema,
)

ROOT = Path(__file__).resolve().parents[2]
VALID = {
    "empty": "",
    "comments only": "# nothing set\n",
    "paths": "training:\n  paths: ['docs/**']\n  workflow: train.yaml\n",
    "gates": "gates:\n  thresholds: ['val_acc >= 0.90', 'val_loss<0.5', 'per_class.star.f1 == 1']\n"
    "  no_significant_regression: [val_acc, val_f1]\n",
    "runners": "runners:\n  train.yml:\n"
    "    orbit-gpu: {cpu: 8, memory: 32Gi, gpus: 2, gpu_type: a100, timeout_minutes: 90}\n"
    "  deploy.yml:\n    orbit-cpu: {cpu: 500m, memory: 0.5}\n",
    "nulls": "runners:\n  train.yml:\n    orbit-gpu: {cpu: null, gpus: null}\n",
    "deploy": "deploy:\n  production: on_command\n  preview_ttl_hours: 24\n",
    "integral float": "deploy:\n  preview_ttl_hours: 24.0\n",
}
INVALID = {  # each file's first problem: line, key path, reason
    "bad threshold": (
        "gates:\n  thresholds:\n    - val_acc >= 0.90\n    - val_acc >> 0.9\n",
        ".github/orbit.yml line 4: gates.thresholds[1]: "
        "'val_acc >> 0.9' is not a comparison like 'val_acc >= 0.90'",
    ),
    "unknown key": (
        "training:\n  pathz: []\n",
        ".github/orbit.yml line 2: training.pathz: unknown key (expected one of: paths, workflow)",
    ),
    "unknown section": (
        "deploy: {}\ngate:\n  thresholds: []\n",
        ".github/orbit.yml line 2: gate: unknown key (expected one of: deploy, gates, runners, training)",
    ),
    "empty paths": (
        "training:\n  paths: []\n",
        ".github/orbit.yml line 2: training.paths: [] should be non-empty",
    ),
    "workflow name": (
        "runners:\n  train:\n    orbit-gpu: {gpus: 1}\n",
        ".github/orbit.yml line 2: runners.train: 'train' is not a workflow file name like 'train.yml'",
    ),
    "negative gpus": (
        "runners:\n  train.yml:\n    orbit-gpu:\n      gpus: -1\n",
        ".github/orbit.yml line 4: runners['train.yml'].orbit-gpu.gpus: -1 is less than the minimum of 0",
    ),
    "memory": (
        "runners:\n  train.yml:\n    orbit-gpu: {memory: lots}\n",
        ".github/orbit.yml line 3: runners['train.yml'].orbit-gpu.memory: "
        "'lots' is not a Kubernetes quantity like '8', '500m' or '32Gi'",
    ),
    "boolean gpus": (
        "runners:\n  train.yml:\n    orbit-gpu: {gpus: yes}\n",
        ".github/orbit.yml line 3: runners['train.yml'].orbit-gpu.gpus: True is not of type 'integer'",
    ),
    "policy": (
        "deploy:\n  production: always\n",
        ".github/orbit.yml line 2: deploy.production: 'always' is not one of ['on_merge', 'on_command']",
    ),
    "ttl": (
        "deploy:\n  preview_ttl_hours: 0\n",
        ".github/orbit.yml line 2: deploy.preview_ttl_hours: 0 is less than the minimum of 1",
    ),
    "ttl over a year": (
        "deploy:\n  preview_ttl_hours: 1000000000000\n",
        ".github/orbit.yml line 2: deploy.preview_ttl_hours: 1000000000000 "
        "is greater than the maximum of 8760",
    ),
    "fractional ttl": (
        "deploy:\n  preview_ttl_hours: 1.5\n",
        ".github/orbit.yml line 2: deploy.preview_ttl_hours: 1.5 is not of type 'integer'",
    ),
    "not a list": (
        "gates:\n  no_significant_regression: val_acc\n",
        ".github/orbit.yml line 2: gates.no_significant_regression: 'val_acc' is not of type 'array'",
    ),
    "metric name": (
        "gates:\n  no_significant_regression: ['val acc']\n",
        ".github/orbit.yml line 2: gates.no_significant_regression[0]: "
        "'val acc' is not a metric name like 'val_f1'",
    ),
    "not a mapping": ("- a\n- b\n", ".github/orbit.yml line 1: ['a', 'b'] is not of type 'object'"),
    "yaml": (
        "deploy:\n  production: [on_merge\n",
        ".github/orbit.yml line 3: not valid YAML: expected ',' or ']', but got '<stream end>'",
    ),
}


def test_the_shipped_schema_is_the_one_the_models_generate() -> None:
    """`python -m bot.repo_config > bot/schemas/orbit.schema.json` refreshes it."""
    assert shipped_schema() == json_schema()
    assert (ROOT / "bot/schemas/orbit.schema.json").read_text() == schema_text()
    Draft202012Validator.check_schema(shipped_schema())


@pytest.mark.parametrize("text", VALID.values(), ids=VALID.keys())
def test_a_valid_file_loads_in_both_the_schema_and_the_models(text: str) -> None:
    document = yaml.safe_load(text) or {}
    assert list(Draft202012Validator(shipped_schema()).iter_errors(document)) == []
    assert parse_config(text) == RepoConfig.model_validate(document)


@pytest.mark.parametrize(("text", "first"), INVALID.values(), ids=INVALID.keys())
def test_an_invalid_file_names_the_line_and_the_reason(text: str, first: str) -> None:
    with pytest.raises(RepoConfigError) as raised:
        parse_config(text)
    assert str(raised.value).splitlines()[0] == first


@pytest.mark.parametrize(("text", "first"), list(INVALID.values())[:-1], ids=list(INVALID)[:-1])
def test_the_models_refuse_what_the_schema_refuses(text: str, first: str) -> None:
    with pytest.raises(ValidationError):
        RepoConfig.model_validate(yaml.safe_load(text))


def test_every_problem_is_reported_in_file_order() -> None:
    text = "deploy:\n  production: always\n  preview_ttl_hours: 0\ntraining:\n  pathz: []\n"
    with pytest.raises(RepoConfigError) as raised:
        parse_config(text)
    assert [(p.line, p.path) for p in raised.value.problems] == [
        (2, "deploy.production"),
        (3, "deploy.preview_ttl_hours"),
        (5, "training.pathz"),
    ]


def test_a_missing_file_means_the_defaults() -> None:
    config = parse_config(None)
    assert (config.deploy.production, config.deploy.preview_ttl_hours) == ("on_merge", 72)
    assert config.gates.thresholds == [] and config.training.workflow == "train.yml"


def test_this_repositorys_own_example_is_valid() -> None:
    config = parse_config((ROOT / ".github/orbit.yml").read_text())
    assert config.gates.thresholds and config.deploy.production == "on_merge"


KEYWORDS = {
    "$schema", "$id", "$defs", "$ref", "title", "description", "default", "type", "properties",
    "additionalProperties", "propertyNames", "items", "anyOf", "enum", "pattern", "minimum", "maximum",
    "minItems", "minLength",
}  # fmt: skip


def keywords(schema: object) -> set[str]:
    if isinstance(schema, list):
        return set().union(*map(keywords, schema)) if schema else set()
    if not isinstance(schema, dict):
        return set()
    names = set(schema) - {"properties", "$defs"}
    inner = [*schema.get("properties", {}).values(), *schema.get("$defs", {}).values()]
    rest = [v for k, v in schema.items() if k not in ("properties", "$defs", "enum", "default")]
    return names | keywords(inner) | keywords(rest)


def test_the_schema_uses_only_json_schema_keywords_an_editor_knows() -> None:
    """A constraint pydantic writes under its own name ("ge") would bind the models and not the schema."""
    schema = json.loads((ROOT / "bot/schemas/orbit.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {k for k in keywords(schema) if not k.startswith("x-")} <= KEYWORDS


def alias_bomb(levels: int) -> str:
    """Return a few hundred bytes of nested aliases that expand to 2**levels values when walked."""
    lines = ["training:", "  paths:", "  - &a0 [x, x]"]
    lines += [f"  - &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_its_first_alias_in_milliseconds() -> None:
    text = alias_bomb(40)  # walked whole: 2**40 values, more memory than any machine has
    assert len(text) < 1_000
    with pytest.raises(RepoConfigError) as caught:
        parse_config(text)
    assert str(caught.value) == (
        ".github/orbit.yml line 4: not valid YAML: aliases (*name) are not allowed in orbit's configuration"
    )


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(RepoConfigError) as caught:
        parse_config("training:\n  paths: [" + "'a', " * 20_000 + "'b']\n")
    assert "over 64 KiB: not a configuration file" in str(caught.value)
