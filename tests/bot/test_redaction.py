"""The bot's own logs are redacted like a job's: a credential in a message, its arguments or a traceback.

`bot.redaction.install()` (called once at start-up) redacts every record as it is created, whatever
logger or handler it goes to; `RedactingFilter` does the same for one handler.
"""

import io
import logging
from collections.abc import Iterator

import pytest

from bot.redaction import RedactingFilter, install, redact, uninstall

TOKEN = "ghs_" + "Ab1" * 12
JIT = "eyIucnVubmVyIjogImV5SmhaMlZ1ZEVsa0lqb2dNVEF3TENBaWJtRnRaU0k2SUNKdmNtSnBkQ0o5In0="
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAx7Hq2Jz9Y1bQ3c4d5e6f7g8h9i0j1k2l3m4n5o6p7q8r9s0t\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.fixture
def installed() -> Iterator[None]:
    install()
    install()  # a second call changes nothing
    yield
    uninstall()


def test_a_record_is_redacted_in_its_message_and_arguments(
    installed: None, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("bot.some.module")
    with caplog.at_level(logging.INFO):
        log.info("minted %s for installation %d", TOKEN, 42)
        log.warning("runner config: ACTIONS_RUNNER_INPUT_JITCONFIG=%s", JIT)
        log.error(f"bad key {PEM}")
        log.info("clone https://x-access-token:%s@github.com/octo-org/model", "s3cr3t-pa55w0rd")
        log.info("%(who)s sent Authorization: Bearer %(token)s", {"who": "orbit", "token": TOKEN})
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "minted *** for installation 42"
    assert JIT not in messages[1] and messages[1].endswith("=***")
    assert "MIIEowIBAAKCAQEA" not in messages[2] and "-----BEGIN RSA PRIVATE KEY-----" in messages[2]
    assert messages[3] == "clone https://x-access-token:***@github.com/octo-org/model"
    assert messages[4] == "orbit sent Authorization: ***"
    assert TOKEN not in caplog.text


def test_a_traceback_is_redacted(installed: None, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("bot.worker")
    try:
        raise RuntimeError(f"403 for token {TOKEN}")
    except RuntimeError:
        log.exception("the delivery failed")
    assert "RuntimeError: 403 for token ***" in caplog.text
    assert TOKEN not in caplog.text


def test_an_ordinary_record_keeps_its_arguments(installed: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("bot.access").info(
            '%s - "%s %s HTTP/%s" %d', "10.0.0.1", "POST", "/webhook", "1.1", 202
        )
    record = caplog.records[0]
    assert record.args == ("10.0.0.1", "POST", "/webhook", "1.1", 202), (
        "a formatter that reads args still can"
    )


def test_the_filter_redacts_what_passes_through_its_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("tests.redaction.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("posting to https://hooks.slack.com/services/T000/B000/%s", "XXXXXXXXXXXXXXXXXXXXXXXX")
        log.warning("AWS_SECRET_ACCESS_KEY=%s", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    finally:
        log.removeHandler(handler)
    assert "XXXXXXXXXXXXXXXXXXXXXXXX" not in stream.getvalue()
    assert "wJalrXUtnFEMI" not in stream.getvalue()
    assert stream.getvalue().splitlines()[1] == "AWS_SECRET_ACCESS_KEY=***"


def test_the_bot_and_the_job_share_one_set_of_patterns() -> None:
    from runner.report.redact import redact as job_redact

    line = f"using {TOKEN} and ACTIONS_RUNNER_INPUT_JITCONFIG={JIT}"
    assert redact(line) == job_redact(line) == "using *** and ACTIONS_RUNNER_INPUT_JITCONFIG=***"
