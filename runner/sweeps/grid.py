"""Parse a sweep: `/retrain train.lr=0.01,0.003 train.epochs=10,20` is the grid of every combination.

The settings reach the workflow as dispatch inputs and `dvc exp run -S key=value`, so they are held
to a strict shape here (and again in train.yml): a key is a dotted params.yaml path, a value a plain
scalar (a number, true/false, a simple word). Anything else is refused with the reason.
"""

import itertools
import math
import re
from dataclasses import dataclass

from bot.pinning import FULL_SHA

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
VALUE = re.compile(r"[A-Za-z0-9_.+-]{1,32}")
MAX_POINTS = 16
MAX_KEYS = 8
MAX_SETTINGS = 240  # characters of one point's `key=value` words: they are part of its run's name


class SweepError(ValueError):
    """A sweep's arguments are not a grid orbit runs; the message says why."""


@dataclass(frozen=True)
class Point:
    """One combination of the grid: its index and its `key=value` settings, in the grid's key order."""

    index: int
    settings: tuple[tuple[str, str], ...]

    @property
    def params(self) -> tuple[str, ...]:
        """Return the settings as `key=value` words (`dvc exp run -S` arguments)."""
        return tuple(f"{key}={value}" for key, value in self.settings)


@dataclass(frozen=True)
class Grid:
    """The values to try for each key; the sweep runs every combination."""

    axes: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """Return the swept keys, in the order they were written."""
        return tuple(key for key, _ in self.axes)

    @property
    def size(self) -> int:
        """Return how many points the grid has."""
        return math.prod(len(values) for _, values in self.axes)

    def points(self) -> list[Point]:
        """Return every combination, the last key varying fastest."""
        combos = itertools.product(*(values for _, values in self.axes))
        return [Point(i, tuple(zip(self.keys, combo, strict=True))) for i, combo in enumerate(combos)]


def sweep_words(args: str) -> list[str]:
    """Return the arguments of `/retrain` after an optional commit SHA: the sweep's, if any."""
    words = args.split()
    return words[1:] if words and FULL_SHA.fullmatch(words[0].lower()) else words


def is_sweep(args: str) -> bool:
    """Return whether `/retrain`'s arguments ask for a sweep (any `key=values` after the SHA)."""
    return any("=" in word for word in sweep_words(args))


def parse_grid(args: str) -> Grid:
    """Return the grid `/retrain`'s arguments ask for; SweepError says what is wrong with them."""
    axes: dict[str, tuple[str, ...]] = {}
    for word in sweep_words(args):
        key, values = _assignment(word)
        if key in axes:
            raise SweepError(f"`{key}` is given twice; write all its values once: `{key}=a,b`.")
        axes[key] = values
    if not axes:
        raise SweepError("no `key=value,...` to sweep.")
    if len(axes) > MAX_KEYS:
        raise SweepError(f"{len(axes)} keys are swept; at most {MAX_KEYS}.")
    grid = Grid(tuple(axes.items()))
    longest = sum(len(key) + 1 + max(map(len, values)) for key, values in grid.axes) + len(axes) - 1
    if longest > MAX_SETTINGS:
        raise SweepError(f"a point's settings would be {longest} characters long; at most {MAX_SETTINGS}.")
    if grid.size > MAX_POINTS:
        shape = " × ".join(str(len(values)) for _, values in grid.axes)
        raise SweepError(
            f"the grid would have {grid.size} points ({shape}); at most {MAX_POINTS} run at once."
        )
    return grid


def _assignment(word: str) -> tuple[str, tuple[str, ...]]:
    """Return the key and values of one `key=v1,v2` word."""
    key, equals, listed = word.partition("=")
    shown = _shown(word)
    if not equals:
        raise SweepError(f"`{shown}` is not `key=value,...`.")
    if not KEY.fullmatch(key):
        raise SweepError(f"`{shown}`: a key is a params.yaml path of letters, digits, `_`, `.` and `-`.")
    if not listed:
        raise SweepError(f"`{key}` has no values.")
    values = tuple(listed.split(","))
    bad = next((value for value in values if not VALUE.fullmatch(value)), None)
    if bad is not None:
        raise SweepError(
            f"`{shown}`: each value is a number, true/false or a simple word (letters, digits, `_.+-`, "
            "at most 32), separated by commas."
        )
    if len(set(values)) != len(values):
        raise SweepError(f"`{key}` lists a value twice.")
    return key, values


def _shown(word: str) -> str:
    """Return a word of the comment as it may be echoed in a code span: plain characters, short."""
    plain = re.sub(r"[^A-Za-z0-9_.,=+-]", "?", word)
    return plain if len(plain) <= 60 else plain[:59] + "…"
