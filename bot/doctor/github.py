"""The App as GitHub knows it: its JWT, permissions and events, installations, webhook and deliveries.

Every call is made as the App (a JWT signed with its private key), never as an installation.
"""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestError, RequestFailed
from jwt.exceptions import PyJWTError

from bot import app_manifest
from bot.doctor.check import Check, failed, passed, warned
from bot.errors import PermanentError, TemporaryError
from bot.github.client import GITHUB_TIMEOUT
from bot.github.hooks import AppHooksClient
from bot.redelivery import failed_deliveries
from bot.settings import Settings

RECENT = timedelta(hours=24)  # the deliveries `orbit doctor` looks at
DELIVERY_PAGES = 3  # the newest 300 attempts at most
NAMES = ("GitHub App", "App permissions", "App events", "installations", "webhook", "deliveries")


class Refused(Exception):
    """GitHub answered with an error status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"GitHub answered {status}")
        self.status = status


async def github_checks(settings: Settings, now: datetime) -> list[Check]:
    """Return the checks of the App on GitHub; after the first fails, the others say they were skipped."""
    github = GitHub(
        AppAuthStrategy(str(settings.app_id()), settings.private_key()),
        base_url=settings.github_api_url,
        timeout=GITHUB_TIMEOUT,
        auto_retry=False,
        http_cache=False,
        cache_strategy=MemCacheStrategy(),  # a JWT of its own, never one another client signed and cached
    )
    try:
        app = await _get(github, "/app")
    except (Refused, TemporaryError, ValueError, PyJWTError) as error:
        skipped = [warned(name, "skipped: the GitHub App check failed") for name in NAMES[1:]]
        return [_app_refused(settings, error), *skipped]
    checks = [
        passed(NAMES[0], f"GitHub accepts the App's JWT: {app.get('slug')} (id {app.get('id')})"),
        permissions_check(app.get("permissions") or {}, _settings_url(app)),
        events_check(app.get("events") or [], _settings_url(app)),
    ]
    for name, check in zip(NAMES[3:], (_installations, _webhook, _deliveries), strict=True):
        try:
            checks.append(await check(github, app, now))
        except (Refused, TemporaryError, PermanentError) as error:
            checks.append(
                failed(name, str(error), f"try again; if it stays, check {settings.github_api_url}")
            )
    return checks


def permissions_check(granted: Mapping[str, str], settings_url: str) -> Check:
    """Return whether the App holds every permission orbit needs, at the level it needs."""
    missing = app_manifest.missing_permissions(granted)
    if not missing:
        return passed(NAMES[1], f"the {len(app_manifest.PERMISSIONS)} orbit needs")
    wanted = ", ".join(f"{name}: {level}" for name, level in missing.items())
    return failed(
        NAMES[1],
        f"missing {wanted}",
        f"grant them at {settings_url}/permissions, then accept them on each installation",
    )


def events_check(subscribed: list[str], settings_url: str) -> Check:
    """Return whether the App subscribes to every event orbit handles."""
    missing = app_manifest.missing_events(subscribed)
    if not missing:
        return passed(NAMES[2], f"subscribed to the {len(app_manifest.EVENTS)} orbit handles")
    return failed(
        NAMES[2],
        f"not subscribed to {', '.join(missing)}",
        f"subscribe to them at {settings_url}/permissions (Subscribe to events)",
    )


async def _installations(github: GitHub[AppAuthStrategy], app: dict[str, Any], now: datetime) -> Check:
    listed = await _get(github, "/app/installations", per_page=100)
    accounts = [str((item.get("account") or {}).get("login")) for item in listed if isinstance(item, dict)]
    if not accounts:
        return failed(
            NAMES[3], "the App is installed nowhere", f"install it: {_public_url(app)}/installations/new"
        )
    return passed(NAMES[3], f"{len(accounts)}: {', '.join(sorted(accounts)[:5])}")


async def _webhook(github: GitHub[AppAuthStrategy], app: dict[str, Any], now: datetime) -> Check:
    config = await _get(github, "/app/hook/config")
    problems = []
    if not config.get("url"):
        problems.append("no webhook URL")
    if not config.get("secret"):  # GitHub shows a secret that is set as ********
        problems.append("no webhook secret")
    if str(config.get("insecure_ssl", "0")) != "0":
        problems.append("SSL verification is off")
    if problems:
        return failed(
            NAMES[4],
            "; ".join(problems),
            f"at {_settings_url(app)}: URL https://HOST/webhook, secret = ORBIT_WEBHOOK_SECRET, SSL verified",
        )
    return passed(NAMES[4], f"{config['url']}, with a secret")


async def _deliveries(github: GitHub[AppAuthStrategy], app: dict[str, Any], now: datetime) -> Check:
    attempts = await AppHooksClient(github).recent_deliveries(now - RECENT, DELIVERY_PAGES)
    failing = sorted(failed_deliveries(attempts), key=lambda attempt: attempt.id, reverse=True)
    total = len({attempt.guid for attempt in attempts})
    if not failing:
        return passed(NAMES[5], f"none of the {total} in the last 24 h failed")
    newest = failing[0]
    secret_hint = (
        " (401: the webhook secret differs from ORBIT_WEBHOOK_SECRET)" if newest.status_code == 401 else ""
    )
    return failed(
        NAMES[5],
        f"{len(failing)} of {total} in the last 24 h failed every attempt; the newest: "
        f"{newest.status or 'no answer'} at {newest.delivered_at:%Y-%m-%d %H:%M} UTC{secret_hint}",
        "make the webhook URL reach `orbit serve`; it asks GitHub to redeliver them once it is up",
    )


async def _get(github: GitHub[AppAuthStrategy], path: str, **params: Any) -> Any:  # JSON
    try:
        response = await github.arequest("GET", path, params=params or None)
    except RequestFailed as error:
        raise Refused(error.response.status_code) from error
    except (RequestError, httpx.TransportError) as error:
        raise TemporaryError(f"cannot reach GitHub: {type(error).__name__}") from error
    return response.json()


def _app_refused(settings: Settings, error: Exception) -> Check:
    if isinstance(error, Refused) and error.status == 401:
        return failed(
            NAMES[0],
            "GitHub refused the App's JWT (401)",
            "ORBIT_GITHUB_APP_ID and the private key must be the App's: make a new key in its settings",
        )
    if isinstance(error, ValueError | PyJWTError):
        return failed(
            NAMES[0],
            "the private key cannot sign the App's JWT",
            "ORBIT_GITHUB_PRIVATE_KEY must be the App's PEM key, as GitHub gave it",
        )
    return failed(
        NAMES[0],
        f"{error} at {settings.github_api_url}/app",
        "check ORBIT_GITHUB_API_URL and that this machine reaches GitHub",
    )


def _settings_url(app: dict[str, Any]) -> str:
    site = urlsplit(_public_url(app))
    owner = app.get("owner") or {}
    where = f"/organizations/{owner.get('login')}" if owner.get("type") == "Organization" else ""
    return f"{site.scheme}://{site.netloc}{where}/settings/apps/{app.get('slug')}"


def _public_url(app: dict[str, Any]) -> str:
    return str(app.get("html_url") or f"https://github.com/apps/{app.get('slug')}")
