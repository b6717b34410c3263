"""One check's outcome, and how `orbit doctor` shows a list of them."""

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

PASSED, FAILED, WARNED = "✓", "✗", "⚠"


@dataclass(frozen=True)
class Check:
    """What one check found.

    `ok`: True passed, False failed (counts in the exit status), None neither: a warning, a check that
    could not tell or was skipped. `fix` says what to do; empty when there is nothing to do.
    """

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    @property
    def mark(self) -> str:
        """Return ✓, ✗ or ⚠."""
        return {True: PASSED, False: FAILED, None: WARNED}[self.ok]

    def line(self) -> str:
        """Return the check as one line: its mark, name, what was found and, when any, the fix."""
        fix = f" — {self.fix}" if self.fix and self.ok is not True else ""
        return f"{self.mark} {self.name}: {self.detail}{fix}"

    def as_json(self) -> dict[str, Any]:
        """Return {check, ok, detail, fix}."""
        fields = asdict(self)
        return {"check": fields.pop("name"), **fields}


def passed(name: str, detail: str) -> Check:
    """Return a check that passed."""
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    """Return a check that failed, with its fix."""
    return Check(name, False, detail, fix)


def warned(name: str, detail: str, fix: str = "") -> Check:
    """Return a check that neither passed nor failed: a warning, or what could not be checked."""
    return Check(name, None, detail, fix)


def failures(checks: Iterable[Check]) -> int:
    """Return how many checks failed: `orbit doctor`'s exit status."""
    return sum(1 for check in checks if check.ok is False)


def render(checks: Iterable[Check]) -> str:
    """Return the checks as lines, then a summary line."""
    checks = list(checks)
    count = failures(checks)
    summary = "every check passed" if count == 0 else f"{count} check{'s' if count > 1 else ''} failed"
    return "\n".join([*(check.line() for check in checks), summary])
