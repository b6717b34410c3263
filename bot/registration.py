"""`orbit app register`: register the GitHub App from its manifest, and keep its credentials.

GitHub's manifest flow (https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest):
a page on this machine posts `.github/app.yml`, as JSON, to GitHub's *new App* form; the person
confirms there; GitHub sends the browser back to this machine with a one-time code, which
`POST /app-manifests/{code}/conversions` exchanges for the App's id, private key and webhook secret.
They are written as files, one per key of the `orbit-github-app` Secret, readable by the owner only,
and never printed.
"""

import html
import http.server
import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import yaml

SECRET_NAME = "orbit-github-app"  # noqa: S105 - the Secret's name, not a secret
CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class RegistrationError(RuntimeError):
    """The App could not be registered; the message says why and what to do."""


@dataclass(frozen=True)
class Registered:
    """What GitHub answers when it converts the manifest's code: the new App and its credentials."""

    app_id: int
    slug: str
    html_url: str
    pem: str
    webhook_secret: str

    def secret_files(self) -> dict[str, str]:
        """Return the `orbit-github-app` Secret's keys and values, as `orbit serve` reads them."""
        return {
            "app-id": str(self.app_id),
            "private-key.pem": self.pem,
            "webhook-secret": self.webhook_secret,
        }


def manifest(template: Path, webhook_url: str, redirect_url: str, name: str | None = None) -> dict[str, Any]:
    """Return the App manifest of `template` (.github/app.yml) for this installation's URLs."""
    if not webhook_url.startswith("https://"):
        raise RegistrationError(
            f"the webhook URL must be https:// (GitHub posts deliveries to it): {webhook_url}"
        )
    fields: dict[str, Any] = yaml.safe_load(template.read_text())
    fields["hook_attributes"] = {**fields.get("hook_attributes", {}), "url": webhook_url, "active": True}
    fields["redirect_url"] = redirect_url
    fields["url"] = f"{urlsplit(webhook_url).scheme}://{urlsplit(webhook_url).netloc}"
    if name:
        fields["name"] = name
    return fields


def new_app_url(github_url: str, organization: str | None, state: str) -> str:
    """Return GitHub's form that creates an App from a manifest, for a user or an organization."""
    base = github_url.rstrip("/")
    owner = f"/organizations/{quote(organization, safe='')}" if organization else ""
    return f"{base}{owner}/settings/apps/new?state={quote(state, safe='')}"


def form_page(fields: dict[str, Any], action: str) -> str:
    """Return the page that posts the manifest to GitHub (the person clicks once; nothing is unescaped)."""
    value = html.escape(json.dumps(fields), quote=True)
    return (
        "<!doctype html><meta charset=utf-8><title>Register orbit</title>"
        f'<form method=post action="{html.escape(action, quote=True)}">'
        f'<input type=hidden name=manifest value="{value}">'
        f"<p>This registers the GitHub App <b>{html.escape(str(fields.get('name', '')))}</b>"
        f" with its webhook at {html.escape(str(fields['hook_attributes']['url']))}.</p>"
        "<button type=submit>Create the App on GitHub</button></form>"
    )


def convert(api_url: str, code: str, client: httpx.Client | None = None) -> Registered:
    """Exchange the one-time code GitHub sent back for the App's id, key and webhook secret."""
    if not code or not set(code) <= CODE_CHARS or len(code) > 100:
        raise RegistrationError("GitHub sent back no usable code: start `orbit app register` again")
    http = client or httpx.Client(timeout=30)
    try:
        response = http.post(f"{api_url.rstrip('/')}/app-manifests/{code}/conversions")
    except httpx.HTTPError as error:
        raise RegistrationError(f"GitHub could not be reached ({type(error).__name__})") from error
    if response.status_code == 404:
        raise RegistrationError("GitHub does not know the code (it is valid for one hour, once): start again")
    if response.status_code != 201:
        raise RegistrationError(f"GitHub answered {response.status_code} to the conversion of the code")
    body = response.json()
    try:
        return Registered(
            int(body["id"]),
            str(body["slug"]),
            str(body["html_url"]),
            str(body["pem"]),
            str(body["webhook_secret"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RegistrationError("GitHub's answer lacks the App's id, key or webhook secret") from error


def write_secret_files(registered: Registered, folder: Path) -> list[Path]:
    """Write one file per key of the Secret into a new folder only its owner can read."""
    if folder.exists() and any(folder.iterdir()):
        raise RegistrationError(f"{folder} is not empty: choose another --out (nothing was overwritten)")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    written = []
    for key, value in registered.secret_files().items():
        path = folder / key
        path.touch(mode=0o600)
        path.write_text(value)
        written.append(path)
    return written


@dataclass
class _Flow:
    """The one registration this machine's small server is waiting for."""

    page: str
    state: str
    api_url: str
    out: Path
    registered: Registered | None = None
    error: RegistrationError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def callback(self, query: str) -> tuple[int, str]:
        """Handle GitHub's redirect: check the state, convert the code, write the files (once)."""
        answer = parse_qs(query)
        if answer.get("state") != [self.state] or self.done.is_set():
            return 400, "This link is not the one this registration started: nothing was done."
        try:
            self.registered = convert(self.api_url, (answer.get("code") or [""])[0])
            write_secret_files(self.registered, self.out)
        except (RegistrationError, OSError) as error:  # the code is spent: say so rather than hang
            self.error = (
                error
                if isinstance(error, RegistrationError)
                else RegistrationError(f"the credentials could not be written to {self.out} ({error})")
            )
            self.done.set()
            return 502, html.escape(str(self.error))
        self.done.set()
        return 200, f"orbit is registered as {html.escape(self.registered.slug)}: go back to the terminal."


def _handler(flow: _Flow, host: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            status, body = (200, flow.page) if path == "/" else (404, "not found")
            if self.headers.get("Host") != host:  # a page of another site, its name rebound to 127.0.0.1
                status, body = 421, "open this page at its own address"
            elif path == "/callback":
                status, body = flow.callback(query)
            data = body.encode()
            self.send_response(status)
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the query holds the one-time code: keep it out of the terminal

    return Handler


def register(
    template: Path,
    webhook_url: str,
    out: Path,
    *,
    organization: str | None = None,
    name: str | None = None,
    github_url: str = "https://github.com",
    api_url: str = "https://api.github.com",
    port: int = 0,
    announce: Any = print,
    timeout: float = 3600,
) -> Registered:
    """Serve the manifest form on 127.0.0.1, wait for GitHub's redirect, and keep the credentials."""
    state = secrets.token_urlsafe(24)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
    local = f"http://127.0.0.1:{server.server_address[1]}"
    fields = manifest(template, webhook_url, f"{local}/callback", name)
    flow = _Flow(form_page(fields, new_app_url(github_url, organization, state)), state, api_url, out)
    server.RequestHandlerClass = _handler(flow, local.removeprefix("http://"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    announce(f"Open {local}/ in a browser on this machine and create the App on GitHub.")
    try:
        if not flow.done.wait(timeout):
            raise RegistrationError("no answer from GitHub in time: start `orbit app register` again")
    finally:
        server.shutdown()
        server.server_close()
    if flow.error:
        raise flow.error
    assert flow.registered is not None
    return flow.registered
