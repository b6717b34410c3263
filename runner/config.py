"""Per-repository options from `.github/orbit.yml` on the base branch, validated with clear errors."""

import functools
import re

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG_PATH = ".github/orbit.yml"
DEFAULT_PATHS = ("dvc.yaml", "params.yaml", "model/**", "data/**.dvc")
OUTPUT_ONLY = ("dvc.lock",)


class RepoConfigError(ValueError):
    """`.github/orbit.yml` is not valid; the message says where and why."""


class TrainingConfig(BaseModel):
    """The `training` section."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(default_factory=lambda: list(DEFAULT_PATHS), min_length=1)
    workflow: str = "train.yml"


class RepoConfig(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    training: TrainingConfig = Field(default_factory=TrainingConfig)


def parse_config(text: str | None) -> RepoConfig:
    """Return the options of a repository; a missing file means the defaults."""
    if text is None or not text.strip():
        return RepoConfig()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RepoConfigError(f"{CONFIG_PATH} is not valid YAML: {error}") from None
    try:
        return RepoConfig.model_validate(document or {})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise RepoConfigError(f"{CONFIG_PATH}: {problems}") from None


@functools.cache
def _pattern(glob: str) -> re.Pattern[str]:
    parts = re.split(r"(\*\*|\*|\?)", glob)
    wildcards = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts) + r"\Z")


def matches(path: str, pattern: str) -> bool:
    """Return whether a path matches a glob where `**` spans folders and `*` does not."""
    return _pattern(pattern).match(path) is not None


def touches_pipeline(files: list[str], config: RepoConfig) -> bool:
    """Return whether any changed file matches the training paths."""
    return any(matches(path, pattern) for path in files for pattern in config.training.paths)


def records_outputs_only(files: list[str]) -> bool:
    """Return whether a push only records a training run's outputs (dvc.lock)."""
    return bool(files) and all(path.rsplit("/", 1)[-1] in OUTPUT_ONLY for path in files)
