"""What the report reads of the workspace and the base: params, metrics and plot rows per file.

Both readers (DVC's API in collect.py, git and the DVC cache in gitcollect.py) hand their results
to the same functions here, so the report sees one shape whichever read them.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.report.compare import flatten

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")
Rows = list[dict[str, str]]


@dataclass
class Revision:
    """What DVC knows of one revision: flattened params and metrics per file, plot rows per file."""

    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    plot_rows: dict[str, Rows] = field(default_factory=dict)


@dataclass
class Collected:
    """Head (the workspace) and base, and the plot definitions of the head."""

    head: Revision
    base: Revision
    definitions: dict[str, dict[str, Any]]
    images: list[str]
    remote: str | None = None


def flat_files(files: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return {file: flattened values} of {file: {"data": values}}, skipping files in error."""
    return {
        path: dict(flatten(entry["data"]))
        for path, entry in files.items()
        if isinstance(entry, Mapping) and isinstance(entry.get("data"), Mapping)
    }


def row_files(sources: Mapping[str, Any]) -> dict[str, Rows]:
    """Return {file: rows} of {file: {"data": parsed}}, keeping the files parsed into a list of rows."""
    return {
        path: entry["data"]
        for path, entry in sources.items()
        if isinstance(entry, Mapping) and isinstance(entry.get("data"), list)
    }


def named_plots(groups: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Return the named plot definitions of dvc.yaml files, and the image files declared as plots.

    `groups` is {config file: {"data": {plot id: props}}}, as DVC's `plots.show` gives definitions;
    the group of stage outputs declared as plots has the empty name.
    """
    named: dict[str, dict[str, Any]] = {}
    images: list[str] = []
    for config_file, group in groups.items():
        for name, props in ((group or {}).get("data") or {}).items():
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                images.append(name)
            elif config_file and isinstance(props, Mapping) and isinstance(props.get("y"), Mapping):
                named[str(name)] = dict(props)
    return named, sorted(dict.fromkeys(images))
