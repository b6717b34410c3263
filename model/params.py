"""Read a stage's section of `params.yaml`."""

from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    """`params.yaml` is missing, malformed or lacks a section."""


def load_params(section: str, path: Path = Path("params.yaml")) -> dict[str, Any]:
    """Return one section of the parameters file, or raise a clear error."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ParamsError(f"cannot read {path}: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get(section), dict):
        raise ParamsError(f"{path} has no '{section}' section")
    values: dict[str, Any] = document[section]
    return values
