"""Where a configuration file is wrong: JSON schema errors mapped to the line of their YAML node.

`yaml.compose` keeps each node's position; a schema error's path (`gates`, `thresholds`, 0) walks
those nodes to the one at fault. An unknown key points at the key itself, a wrong value at the value.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


@dataclass(frozen=True, order=True)
class Problem:
    """One problem of a configuration file: 1-based line and column (0: unknown), the key path, the reason."""

    line: int
    column: int
    path: str
    reason: str

    def describe(self, file: str) -> str:
        """Return the problem as one line: `.github/orbit.yml line 4: gates.thresholds[0]: ...`."""
        where = f"{file} line {self.line}" if self.line else file
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


def yaml_problem(error: yaml.YAMLError) -> Problem:
    """Return a YAML syntax error as a problem at its mark."""
    mark = getattr(error, "problem_mark", None)
    reason = f"not valid YAML: {getattr(error, 'problem', None) or error}"
    return Problem(mark.line + 1, mark.column + 1, "", reason) if mark else Problem(0, 0, "", reason)


def problems_of(schema: dict[str, Any], document: object, root: yaml.Node | None) -> list[Problem]:
    """Return every way the document breaks the schema, each at its node's line, in file order."""
    validator = Draft202012Validator(schema)
    return sorted(_problem(error, root) for error in validator.iter_errors(document))


def _problem(error: ValidationError, root: yaml.Node | None) -> Problem:
    error = _most_relevant(error)
    path = list(error.absolute_path)
    reason = _reason(error)
    key = _offending_key(error)
    if key is not None:
        path.append(key)
    if error.validator == "additionalProperties" and key is not None:
        reason = (
            f"unknown key (expected one of: {', '.join(sorted(_schema_of(error).get('properties', {})))})"
        )
    node = _node_at(root, path, key=key is not None)
    line, column = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (0, 0)
    return Problem(line, column, _dotted(path), reason)


def _schema_of(error: ValidationError) -> Mapping[str, Any]:
    """Return the schema the error is about; a boolean schema (`true`/`false`) has no keywords."""
    return error.schema if isinstance(error.schema, Mapping) else {}


def _most_relevant(error: ValidationError) -> ValidationError:
    """Return, for `anyOf` (an optional field: a value or null), the error of the non-null branch."""
    if error.validator != "anyOf" or not error.context:
        return error
    real = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
    return real[0] if len(real) == 1 else error


def _reason(error: ValidationError) -> str:
    hint = _schema_of(error).get("x-orbit-hint")
    if error.validator in ("pattern", "type") and hint:
        return f"{error.instance!r} is not {hint}"
    return str(error.message)


def _offending_key(error: ValidationError) -> str | None:
    """Return the key at fault when the error is about a mapping's keys (unknown, or badly named)."""
    if "propertyNames" in error.absolute_schema_path:
        return str(error.instance)
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return None
    known = _schema_of(error).get("properties", {})
    unknown = sorted(str(key) for key in error.instance if key not in known)
    return unknown[0] if unknown else None


def _node_at(root: yaml.Node | None, path: Sequence[object], key: bool) -> yaml.Node | None:
    """Return the node at the path (its key node for the last step when `key`), else the deepest found."""
    node = root
    for depth, step in enumerate(path):
        last = depth == len(path) - 1
        child = _child(node, step, key and last)
        if child is None:
            return node
        node = child
    return node


def _child(node: yaml.Node | None, step: object, key: bool) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        pairs: Iterable[tuple[yaml.Node, yaml.Node]] = node.value
        found = next(((k, v) for k, v in pairs if getattr(k, "value", None) == str(step)), None)
        return None if found is None else found[0 if key else 1]
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        item: yaml.Node = node.value[step]
        return item
    return None


def _dotted(path: Sequence[object]) -> str:
    """Return a JSON path as `gates.thresholds[0]`."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif "." in str(step) or not str(step):
            text += f"[{str(step)!r}]"
        else:
            text += f".{step}" if text else str(step)
    return text


def line_of(text: str, path: Sequence[object]) -> int:
    """Return the 1-based line of the node at a JSON path of a YAML text (0 when it cannot be found)."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return 0
    for step in path:
        node = _child(node, step, key=False)
    return node.start_mark.line + 1 if node is not None else 0
