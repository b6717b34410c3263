"""What the job knows of its own run, as `orbit report build` is told it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class RunRecord:
    """What the job knows of its own run: the `dvc repro` output and how long it took."""

    log: str | None = None
    duration_seconds: float | None = None
