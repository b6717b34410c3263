"""Set values in params.yaml by editing only their lines: comments, order and layout stay as written.

The bot's image has no round-trip YAML library, so the edit is a careful text edit of block
mappings (`train:` then an indented `lr: 0.002  # note`), checked afterwards: the edited file must
load as the original with exactly those values changed, or nothing is written.
"""

import re
from typing import Any

import yaml

# A mapping key on its own line, its value (if any) and a trailing comment (if any).
_LINE = re.compile(
    r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)(?P<colon>[ \t]*:)"
    r"(?:(?P<space>[ \t]+)(?P<value>[^#\s][^#]*?)?)?(?P<comment>[ \t]+#.*)?[ \t]*$"
)
_PLAIN = re.compile(r"[A-Za-z0-9_.+-]+")


class ParamsEditError(ValueError):
    """params.yaml cannot take the values by a safe edit; the message says why."""


def _locate(lines: list[str]) -> dict[str, int]:
    """Return the line of each dotted key path whose value is a plain scalar on the key's own line."""
    found: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = _LINE.match(line)
        if match is None:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([key for _, key in stack] + [match["key"]])
        if match["value"] is None:
            stack.append((indent, match["key"]))
        elif _PLAIN.fullmatch(match["value"].strip()):
            found.setdefault(path, number)
    return found


def _replace(line: str, value: str) -> str:
    match = _LINE.match(line)
    assert match is not None
    assert match["value"] is not None
    return line[: match.start("value")] + value + line[match.end("value") :]


def _expected(original: Any, settings: tuple[tuple[str, str], ...]) -> Any:
    """Return the original's data with the settings applied, as YAML reads their values."""
    for key, value in settings:
        node = original
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = yaml.safe_load(value)
    return original


def current_values(text: str, settings: tuple[tuple[str, str], ...]) -> bool:
    """Return whether params.yaml already holds every setting's value."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ParamsEditError("params.yaml is not valid YAML") from error
    for key, value in settings:
        node = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        if node != yaml.safe_load(value) or type(node) is not type(yaml.safe_load(value)):
            return False
    return True


def set_values(text: str, settings: tuple[tuple[str, str], ...]) -> str:
    """Return params.yaml's text with each `key` set to `value`; ParamsEditError when it cannot be safely."""
    try:
        original = yaml.safe_load(text)
    except yaml.YAMLError as error:  # its text is the PR's: not repeated in the reply
        raise ParamsEditError("params.yaml is not valid YAML") from error
    lines = text.splitlines(keepends=True)
    located = _locate([line.rstrip("\r\n") for line in lines])
    for key, value in settings:
        if key not in located:
            raise ParamsEditError(f"params.yaml has no `{key}` set to a plain value on its own line")
        number = located[key]
        ending = lines[number][len(lines[number].rstrip("\r\n")) :]
        lines[number] = _replace(lines[number].rstrip("\r\n"), value) + ending
    edited = "".join(lines)
    try:
        if yaml.safe_load(edited) != _expected(original, settings):
            raise ParamsEditError("editing params.yaml would change more than the sweep point's values")
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise ParamsEditError("params.yaml could not be edited safely") from error
    return edited
