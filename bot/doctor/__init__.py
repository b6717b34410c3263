"""`orbit doctor`: check the installation, one line a check, each failure with its fix.

The exit status is the number of failed checks. Nothing is created or changed anywhere.
"""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from bot.doctor.check import Check, failed, failures, passed, warned
from bot.doctor.database import database_check
from bot.doctor.dvc import dvc_check
from bot.doctor.github import NAMES as GITHUB_CHECKS
from bot.doctor.github import github_checks
from bot.doctor.kube import kube_checks
from bot.settings import Settings, SettingsError, load_settings

__all__ = ["Check", "failures", "run_checks"]


def run_checks(project: Path) -> list[Check]:
    """Run every check; those that need valid settings say so when the settings are not."""
    settings, checks = settings_checks()
    if settings is None:
        skipped = [*GITHUB_CHECKS, "database", "Kubernetes"]
        return [
            *checks,
            *(warned(name, "skipped: the settings are not valid") for name in skipped),
            dvc_check(project),
        ]
    if settings.role == "ingest":
        return [*checks, *ingest_skips(), database_check(settings.database_url, False), dvc_check(project)]
    checks += asyncio.run(github_checks(settings, datetime.now(UTC)))
    checks.append(database_check(settings.database_url, settings.redeliver_interval_seconds > 0))
    checks += kube_checks(settings)
    checks.append(dvc_check(project))
    return checks


def ingest_skips() -> list[Check]:
    """Return why an ingest process's settings are not checked against GitHub or the cluster."""
    why = (
        "skipped: an ingest process (ORBIT_ROLE=ingest) acts as no App and needs no cluster;"
        " run `orbit doctor` where the workers run"
    )
    return [warned(name, why) for name in (*GITHUB_CHECKS, "Kubernetes")]


def settings_checks() -> tuple[Settings | None, list[Check]]:
    """Return the settings (None when not valid), their check, and a warning per half-configured feature."""
    try:
        settings = load_settings()
        if settings.role != "ingest":  # an ingest process holds no key
            settings.private_key()
    except SettingsError as error:
        return None, [failed("settings", str(error), "set them as docs/install.md says")]
    checks = [passed("settings", "every ORBIT_ variable orbit needs is set and valid")]
    warnings = getattr(settings, "warnings", None)  # Settings.warnings() comes with issue 15's settings work
    if callable(warnings):
        checks += [warned("settings", str(warning)) for warning in warnings()]
    return settings, checks
