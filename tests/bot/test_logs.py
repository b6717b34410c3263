"""Structured logs: each line one JSON object, carrying the delivery, repository, PR and run it is about."""

import asyncio
import io
import json
import logging
import logging.config
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import cli, logs
from bot.context import Context
from bot.events import IssueCommentEvent
from bot.router import Router
from bot.worker import WorkerPool
from tests.bot.test_bot_process import bot_env
from tests.bot.test_serve_workers import Serve
from tests.bot.test_worker import enqueue, make_inbox
from tests.fakes import FakeApp, body_of, comment_payload, signed_headers

Lines = Callable[[], list[dict[str, Any]]]
log = logging.getLogger("tests.handler")


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    """Send every record of the process through orbit's JSON handler into a buffer; read it as objects."""
    buffer = io.StringIO()
    handler, root = logs.handler("json", buffer), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def workers_for(tmp_path: Path, router: Router) -> WorkerPool:
    return WorkerPool(make_inbox(tmp_path), router, FakeApp(), features={})


async def test_a_handlers_line_carries_the_delivery_repository_and_pull(
    tmp_path: Path, json_lines: Lines
) -> None:
    router = Router()

    @router.on(IssueCommentEvent, "created")
    async def comment(event: IssueCommentEvent, _: Context) -> None:
        log.info("handling comment %s", event.comment.id)

    workers = workers_for(tmp_path, router)
    enqueue(workers.inbox, 12, "delivery-12")
    item = workers.inbox.claim()
    assert item is not None
    log.info("before any delivery")
    await workers.handle(item)
    log.info("after it")
    before, handled, after = json_lines()
    assert handled["message"] == "handling comment 1012"
    assert (handled["delivery_id"], handled["repository"], handled["pull"]) == (
        "delivery-12",
        "octo-org/model",
        12,
    )
    assert (handled["level"], handled["logger"]) == ("INFO", "tests.handler")
    assert "time" in handled
    for outside in (before, after):
        assert not set(outside) & set(logs.FIELDS), "a line outside any delivery names none"


async def test_concurrent_handlers_each_log_their_own_delivery_and_run(
    tmp_path: Path, json_lines: Lines
) -> None:
    router, both_started, started = Router(), asyncio.Event(), 0

    @router.on(IssueCommentEvent, "created")
    async def interleaved(event: IssueCommentEvent, _: Context) -> None:
        nonlocal started
        number = event.issue.number
        logs.bind(run_id=900 + number)
        log.info("started PR %s", number)
        started += 1
        if started == 2:
            both_started.set()
        await both_started.wait()  # the other handler has bound its own fields meanwhile
        await asyncio.to_thread(log.info, "finished PR %s in a thread", number)

    workers = workers_for(tmp_path, router)
    enqueue(workers.inbox, 1, "delivery-1")
    enqueue(workers.inbox, 2, "delivery-2")
    items = workers.inbox.claim_many(2)
    await asyncio.gather(*(workers.handle(item) for item in items))
    log.info("both done")
    lines = json_lines()
    assert len(lines) == 5
    for line in lines[:4]:
        number = int(line["message"].split("PR ")[1].split()[0])
        assert (line["delivery_id"], line["pull"], line["run_id"]) == (
            f"delivery-{number}",
            number,
            900 + number,
        )
    assert "run_id" not in lines[4], "a run bound in a handler ends with it"


def test_bind_takes_only_the_known_fields_and_leaves_out_unknown_values() -> None:
    with logs.scope(delivery_id="d", pull=None):
        assert dict(logs.bound()) == {"delivery_id": "d"}
        with pytest.raises(ValueError, match="not a log field: token"):
            logs.bind(token="ghp_x")
    assert dict(logs.bound()) == {}


def test_a_credential_is_redacted_in_the_message_the_extras_and_the_traceback(json_lines: Lines) -> None:
    token = "ghs_" + "a1B2c3D4" * 5
    try:
        raise RuntimeError(f"GitHub refused Authorization: token {token}")
    except RuntimeError:
        log.exception("calling GitHub with %s", token, extra={"header": f"Bearer {token}"})
    (line,) = json_lines()
    assert token not in json.dumps(line)
    assert line["message"] == "calling GitHub with ***"
    assert line["header"] == "Bearer ***"
    assert "RuntimeError: GitHub refused Authorization: ***" in line["exc_info"]


def test_the_text_format_appends_the_fields_and_redacts_too() -> None:
    buffer = io.StringIO()
    handler = logs.handler("text", buffer)
    record = logging.LogRecord("orbit", logging.INFO, __file__, 1, "token=%s", ("hunter2hunter2",), None)
    with logs.scope(delivery_id="d-1", repository="octo-org/model", pull=7):
        handler.handle(record)
    assert (
        buffer.getvalue()
        .rstrip()
        .endswith("INFO orbit: token=*** [delivery_id=d-1 repository=octo-org/model pull=7]")
    )


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Restore the root logger and uvicorn's loggers after a test configures logging."""
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = [
        (logger, logger.handlers[:], logger.level, logger.propagate)
        for logger in map(logging.getLogger, names)
    ]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("root_logging")
def test_uvicorns_own_lines_go_through_the_json_handler_and_its_access_log_stays_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.config.dictConfig(logs.config("json", "info"))
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 4242)
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "POST /webhook HTTP/1.1" 202')
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", "Started server process [4242]")
    ]


@pytest.mark.usefixtures("root_logging")
def test_configure_leaves_logging_that_orbit_serve_set_up_alone() -> None:
    logging.config.dictConfig(logs.config("text", "warning"))
    logs.configure("json")  # the app factory, in a worker process uvicorn configured
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, logs.TextFormatter)
    assert logging.getLogger().level == logging.WARNING


@pytest.mark.usefixtures("root_logging")
def test_orbit_serve_hands_uvicorn_the_logging_of_the_configured_format(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    from tests.bot.test_bot_process import PEM

    monkeypatch.setenv("ORBIT_GITHUB_APP_ID", "1")
    monkeypatch.setenv("ORBIT_GITHUB_PRIVATE_KEY", PEM)
    monkeypatch.setenv("ORBIT_WEBHOOK_SECRET", "secret")
    monkeypatch.setenv("ORBIT_LOG_FORMAT", "text")
    monkeypatch.setenv("ORBIT_DATABASE_URL", f"sqlite:///{tmp_path / 'orbit.db'}")
    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options, app=app))
    assert cli._serve(cli.build_parser().parse_args(["serve", "--log-level", "debug"])) == 0
    assert ran["log_config"] == logs.config("text", "debug")
    assert ran["access_log"] is False


@pytest.mark.slow
def test_orbit_serve_writes_json_lines_with_the_deliverys_fields_in_its_worker_processes(
    tmp_path: Path,
) -> None:
    env = bot_env("http://127.0.0.1:9", tmp_path / "orbit.db") | {"ORBIT_REDELIVER_INTERVAL_SECONDS": "0"}
    bot = Serve(env, workers=2, log=tmp_path / "serve.log")
    try:
        bot.wait_started(2)
        payload = comment_payload("/help", number=31)
        del payload["comment"]  # unusable: the worker logs why, inside the delivery
        body = body_of(payload)
        answer = httpx.post(
            f"{bot.url}/webhook", content=body, headers=signed_headers("issue_comment", body, "delivery-31")
        )
        assert answer.status_code == 202
        deadline = time.monotonic() + 20
        while "not a usable" not in bot.output() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        bot.stop()
    lines = [json.loads(line) for line in bot.output().splitlines()]  # every line is one JSON object
    started = [line for line in lines if line["message"] == "Application startup complete."]
    assert len(started) == 2 and all(line["logger"] == "uvicorn.error" for line in started)
    (unusable,) = [line for line in lines if "not a usable" in line["message"]]
    assert (unusable["delivery_id"], unusable["repository"], unusable["pull"]) == (
        "delivery-31",
        "octo-org/model",
        31,
    )
    assert not [line for line in lines if "POST /webhook" in line["message"]], "no access log"
