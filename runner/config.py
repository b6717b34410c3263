"""Which changes train: the training paths of `.github/orbit.yml` matched against a PR's files."""

import functools
import re

from bot.repo_config import CONFIG_PATH, RepoConfig, RepoConfigError, parse_config

__all__ = ["CONFIG_PATH", "RepoConfig", "RepoConfigError", "matches", "parse_config", "touches_pipeline"]
OUTPUT_ONLY = ("dvc.lock",)


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
