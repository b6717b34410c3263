"""The contract between training's gates and deploying, written once for both sides.

The training flow completes a commit's `orbit/train` check run; when a gate of `.github/orbit.yml`
failed, the check's title starts with `GATE_FAILED` and names the failed gates. The deploy flow,
which must not import the training flow, reads that title back from the check run orbit itself
created (a check run of the same name made by another App or a workflow proves nothing).
"""

from bot.github.checks import CheckRunInfo

TRAIN_CHECK = "orbit/train"
GATE_FAILED = "Gate failed: "
SEPARATOR = "; "


def gate_failed_title(failed: list[str]) -> str:
    """Return the check run title of a run whose gates failed: `Gate failed: val_acc >= 0.9 (0.85)`."""
    return GATE_FAILED + SEPARATOR.join(failed)


def failed_gates(title: str | None) -> list[str]:
    """Return the failed gates a check run title names; [] when it is not a gate failure."""
    if not title or not title.startswith(GATE_FAILED):
        return []
    return [gate for gate in title.removeprefix(GATE_FAILED).split(SEPARATOR) if gate]


def latest_own_check(checks: list[CheckRunInfo], app_slug: str) -> CheckRunInfo | None:
    """Return the newest completed `orbit/train` check run that orbit's App made, or None."""
    own = [c for c in checks if c.app_slug == app_slug and c.name == TRAIN_CHECK and c.status == "completed"]
    return max(own, key=lambda check: check.id, default=None)
