"""Parse params, metrics and plot files as DVC 3 does, without importing DVC.

Each function mirrors the DVC function named in its docstring; tests/runner/test_report_collect_*.py
compare the results with DVC's own. A file DVC would fail on raises `Unsupported`, so the caller
hands the project to DVC's API and the user gets DVC's behaviour and messages for it.
"""

import copy
import csv
import functools
import io
import json
import os
from collections.abc import Mapping
from typing import Any

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".gif", ".png", ".svg"})  # dvc_render's ImageRenderer
ROW_EXTENSIONS = frozenset({".csv", ".tsv", ".json", ".yaml", ".yml"})
GLOB_CHARACTERS = frozenset("*?[]")


class Unsupported(Exception):
    """The project or a file is outside what this reader mirrors of DVC; DVC's API must read it."""


@functools.lru_cache(maxsize=16)
def parse_yaml(text: str) -> Any:
    """Parse YAML 1.2 as `dvc.utils.serialize.parse_yaml` does (ruamel's safe loader; empty is {}).

    The same text (dvc.yaml, params.yaml of both sides) is parsed once: callers must not change
    what this returns.
    """
    from ruamel.yaml import YAML

    try:
        return YAML(typ="safe").load(text) or {}
    except Exception as error:  # ruamel's errors, or a constructor's: DVC reports either its own way
        raise Unsupported(f"YAML that does not parse: {error}") from error


def parse_json(text: str) -> Any:
    """Parse JSON as `dvc.utils.serialize.parse_json` does (empty is {})."""
    try:
        return json.loads(text) or {}
    except (ValueError, RecursionError) as error:
        raise Unsupported(f"JSON that does not parse: {error}") from error


def decoded(data: bytes, path: str) -> str:
    """Return a file's UTF-8 text; DVC reports other encodings as an error of its own."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Unsupported(f"{path} is not UTF-8") from error


def load_values(path: str, data: bytes) -> Any:
    """Parse a params or metrics file by its suffix, as `dvc.utils.serialize.load_path` does."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".toml", ".py"):
        raise Unsupported(f"{path}: TOML and Python params are left to DVC")
    text = decoded(data, path)
    return parse_json(text) if suffix == ".json" else parse_yaml(text)


def check_context(values: Any) -> None:
    """Refuse params.yaml values DVC's templating context cannot hold (`Context._convert_with_meta`).

    DVC loads params.yaml into that context whenever it reads dvc.yaml, and fails the whole
    revision when a value is of another type (a date, say).
    """
    if not isinstance(values, dict):
        raise Unsupported("a params.yaml that is not a mapping")
    stack: list[Any] = [values]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack += value.values()
        elif isinstance(value, list):
            stack += value
        elif value is not None and not isinstance(value, int | float | str | bytes | bool):
            raise Unsupported(f"a value of type {type(value).__name__} in params.yaml")


def extract_metrics(values: Any) -> Any:
    """Keep numbers, strings and mappings of them, as `dvc.repo.metrics.show._extract_metrics` does."""
    if isinstance(values, int | float | str):
        return values
    if not isinstance(values, dict):
        return None
    kept = {}
    for key, value in values.items():
        extracted = extract_metrics(value)
        if extracted not in (None, {}):
            kept[key] = extracted
    return kept


def read_metric(path: str, data: bytes) -> Any:
    """Return a metrics file's values as `dvc.repo.metrics.show._read_metric` does."""
    return extract_metrics(load_values(path, data)) or {}


def select_params(values: Any, key_paths: list[str]) -> Any:
    """Return the whole file, or only the dotted keys asked for, as DVC's `read_param_file` does."""
    if not key_paths:
        return values
    selected: dict[Any, Any] = {}
    for key_path in dict.fromkeys(key_paths):
        if GLOB_CHARACTERS & set(key_path):
            raise Unsupported(f"a glob in the params key {key_path!r}")
        _copy_key(values, key_path.split("."), selected)
    return selected


def _copy_key(values: Any, keys: list[str], into: dict[Any, Any]) -> None:
    """Copy values[k1][k2]… into `into` under the same keys, when every key is there."""
    node = values
    for key in keys:
        if isinstance(node, list):
            raise Unsupported("a params key into a list")
        if not isinstance(node, Mapping) or key not in node:
            return
        node = node[key]
    target = into
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = copy.deepcopy(node)


def load_rows(path: str, data: bytes, header: bool) -> Any:
    """Parse a plot data file as `dvc.repo.plots.parse` does; None for an image (no rows)."""
    extension = os.path.splitext(path)[1]
    if extension in IMAGE_EXTENSIONS:
        return None
    if extension not in ROW_EXTENSIONS:
        return None  # DVC reads no rows of it either (an error it leaves out of the plots)
    text = decoded(data, path)
    if extension in (".csv", ".tsv"):
        if not header:
            raise Unsupported(f"{path}: a CSV without a header is left to DVC")
        return list(csv.DictReader(io.StringIO(text), delimiter="\t" if extension == ".tsv" else ","))
    return parse_json(text) if extension == ".json" else parse_yaml(text)
