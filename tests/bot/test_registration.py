"""`orbit app register`: the manifest flow, run end to end against a stand-in for GitHub's conversion API."""

import json
import re
import stat
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
import yaml

from bot.registration import (
    Registered,
    RegistrationError,
    convert,
    form_page,
    manifest,
    new_app_url,
    register,
    write_secret_files,
)

TEMPLATE = Path(__file__).resolve().parents[2] / ".github" / "app.yml"
API = "https://api.github.test"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"
APP_URL = "https://github.com/apps/orbit-acme"
CONVERTED: dict[str, object] = {
    "id": 4242,
    "slug": "orbit-acme",
    "html_url": APP_URL,
    "pem": PEM,
    "webhook_secret": "whsec-from-github",
    "client_id": "Iv1.x",
    "client_secret": "never-kept",
}


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = dict(attrs)
        if tag == "form":
            self.action = fields.get("action") or ""
        if tag == "input":
            self.inputs[fields.get("name") or ""] = fields.get("value") or ""


def read_form(page: str) -> _Form:
    form = _Form()
    form.feed(page)
    return form


def test_the_manifest_keeps_the_permissions_and_events_and_takes_this_installations_urls() -> None:
    fields = manifest(TEMPLATE, "https://orbit.acme.dev/webhook", "http://127.0.0.1:9/callback")
    original = yaml.safe_load(TEMPLATE.read_text())
    assert fields["default_permissions"] == original["default_permissions"]
    assert fields["default_events"] == original["default_events"]
    assert fields["hook_attributes"] == {"url": "https://orbit.acme.dev/webhook", "active": True}
    assert fields["redirect_url"] == "http://127.0.0.1:9/callback"
    assert fields["url"] == "https://orbit.acme.dev"


def test_a_webhook_url_that_is_not_https_is_refused() -> None:
    with pytest.raises(RegistrationError, match="https"):
        manifest(TEMPLATE, "http://orbit.acme.dev/webhook", "http://127.0.0.1:9/callback")


def test_the_form_posts_the_manifest_to_the_organizations_new_app_page_and_escapes_it() -> None:
    fields = manifest(
        TEMPLATE, "https://orbit.acme.dev/webhook", "http://127.0.0.1:9/callback", '"><script>x'
    )
    action = new_app_url("https://github.com", "acme corp", "s&t")
    form = read_form(form_page(fields, action))
    assert form.action == "https://github.com/organizations/acme%20corp/settings/apps/new?state=s%26t"
    assert json.loads(form.inputs["manifest"]) == fields  # the whole manifest, back intact
    assert "<script>" not in form_page(fields, action)


def test_the_users_own_new_app_page_without_an_organization() -> None:
    assert (
        new_app_url("https://ghe.acme.dev/", None, "abc")
        == "https://ghe.acme.dev/settings/apps/new?state=abc"
    )


@respx.mock
def test_the_code_is_converted_into_the_apps_credentials() -> None:
    route = respx.post(f"{API}/app-manifests/abc123/conversions").respond(201, json=CONVERTED)
    registered = convert(API, "abc123")
    assert route.call_count == 1
    assert registered == Registered(4242, "orbit-acme", APP_URL, PEM, "whsec-from-github")


@respx.mock
@pytest.mark.parametrize(
    ("status", "message"), [(404, "valid for one hour"), (500, "answered 500"), (201, "lacks the App's id")]
)
def test_a_failed_conversion_is_a_clear_error(status: int, message: str) -> None:
    respx.post(f"{API}/app-manifests/abc/conversions").respond(status, json={"message": "x"})
    with pytest.raises(RegistrationError, match=message):
        convert(API, "abc")


@pytest.mark.parametrize("code", ["", "../../user", "a b", "x" * 101])
def test_a_code_that_could_change_the_url_is_never_sent(code: str) -> None:
    with respx.mock(assert_all_called=False) as mock:
        with pytest.raises(RegistrationError, match="no usable code"):
            convert(API, code)
        assert not mock.calls


def test_the_credentials_are_written_for_the_owner_only_and_nothing_is_overwritten(tmp_path: Path) -> None:
    registered = Registered(1, "s", "u", "PEM", "WH")
    folder = tmp_path / "creds"
    written = write_secret_files(registered, folder)
    assert {path.name: path.read_text() for path in written} == {
        "app-id": "1",
        "private-key.pem": "PEM",
        "webhook-secret": "WH",
    }
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in written)
    with pytest.raises(RegistrationError, match="not empty"):
        write_secret_files(Registered(2, "t", "v", "OTHER", "X"), folder)
    assert (folder / "private-key.pem").read_text() == "PEM"


def start_registration(
    out: Path, announced: list[str] | None = None, organization: str | None = None
) -> tuple[threading.Thread, str, dict[str, Registered | BaseException]]:
    """Run `register` in a thread until it announces its page; return the thread, the page, the outcome."""
    lines: list[str] = [] if announced is None else announced
    outcome: dict[str, Registered | BaseException] = {}

    def run() -> None:
        try:
            outcome["ok"] = register(
                TEMPLATE,
                "https://orbit.acme.dev/webhook",
                out,
                organization=organization,
                api_url=API,
                announce=lines.append,
                timeout=30,
            )
        except BaseException as error:  # the test reads it
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    while not lines:
        thread.join(0.01)
    local = re.search(r"http://127\.0\.0\.1:\d+", lines[0])
    assert local is not None
    return thread, local.group(0), outcome


def test_the_whole_flow_through_the_local_page(tmp_path: Path) -> None:
    out = tmp_path / "orbit-github-app"
    announced: list[str] = []
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.post(f"{API}/app-manifests/one-time/conversions").respond(201, json=CONVERTED)
        thread, local, outcome = start_registration(out, announced, organization="acme")
        form = read_form(httpx.get(f"{local}/").text)
        state = parse_qs(urlsplit(form.action).query)["state"][0]
        assert "/organizations/acme/" in form.action
        assert json.loads(form.inputs["manifest"])["redirect_url"] == f"{local}/callback"

        forged = httpx.get(f"{local}/callback", params={"code": "one-time", "state": "guessed"})
        assert forged.status_code == 400
        assert not out.exists()  # a link someone else made does nothing

        done = httpx.get(f"{local}/callback", params={"code": "one-time", "state": state})
        thread.join(10)
    assert done.status_code == 200
    assert "ok" in outcome, outcome
    assert (out / "webhook-secret").read_text() == "whsec-from-github"
    assert "never-kept" not in "".join(path.read_text() for path in out.iterdir())
    assert all(PEM not in line for line in announced)


def test_a_page_of_another_site_rebound_to_this_machine_reads_nothing(tmp_path: Path) -> None:
    """DNS rebinding: evil.example resolves to 127.0.0.1, and its script asks for the form (and the state)."""
    out = tmp_path / "creds"
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.post(f"{API}/app-manifests/one-time/conversions").respond(201, json=CONVERTED)
        thread, local, outcome = start_registration(out)
        port = local.rsplit(":", 1)[1]
        rebound = httpx.get(f"{local}/", headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 421
        assert "state=" not in rebound.text and "manifest" not in rebound.text
        assert rebound.headers["X-Frame-Options"] == "DENY"
        page = httpx.get(f"{local}/")
        state = parse_qs(urlsplit(read_form(page.text).action).query)["state"][0]
        forged = httpx.get(
            f"{local}/callback", params={"code": "one-time", "state": state}, headers={"Host": "evil.example"}
        )
        assert forged.status_code == 421 and not out.exists()
        assert httpx.get(f"{local}/callback", params={"code": "one-time", "state": state}).status_code == 200
        thread.join(10)
    assert "ok" in outcome


def test_credentials_that_cannot_be_written_end_the_registration_with_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "not-a-folder"
    out.write_text("a file where the folder should be")
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.post(f"{API}/app-manifests/one-time/conversions").respond(201, json=CONVERTED)
        thread, local, outcome = start_registration(out)
        state = parse_qs(urlsplit(read_form(httpx.get(f"{local}/").text).action).query)["state"][0]
        answer = httpx.get(f"{local}/callback", params={"code": "one-time", "state": state})
        thread.join(10)
    assert not thread.is_alive(), "it ends at once instead of waiting an hour"
    assert answer.status_code == 502
    error = outcome["error"]
    assert isinstance(error, RegistrationError) and "could not be written" in str(error)
