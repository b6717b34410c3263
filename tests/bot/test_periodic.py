"""Periodic jobs at a stop: a job marked `cut_short` is cancelled, any other finishes its pass."""

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import bot.app
from bot.inbox import Inbox, make_engine
from bot.web import Periodic, create_app
from bot.worker import Retention
from tests.bot.test_roles import settings_for


async def serve_then_stop(tmp_path: Path, periodic: list[Periodic], started: asyncio.Event) -> float:
    """Start the app with `periodic`, wait for `started`, stop it; return how long the stop took."""
    inbox = Inbox(make_engine(f"sqlite:///{tmp_path / 'orbit.db'}"))
    inbox.create_schema()
    app = create_app(inbox, None, None, periodic=periodic)
    try:
        async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
            await asyncio.wait_for(started.wait(), 10)
            stopping = asyncio.get_running_loop().time()
        return asyncio.get_running_loop().time() - stopping
    finally:
        inbox.engine.dispose()


async def test_a_long_pass_marked_cut_short_is_cancelled_at_a_stop(tmp_path: Path) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def endless_pass() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    took = await serve_then_stop(tmp_path, [Periodic("long", endless_pass, 600, cut_short=True)], started)
    assert cancelled.is_set()
    assert took < 5  # not the 30 s the pass would have taken


async def test_a_pass_not_marked_finishes_before_the_stop_ends(tmp_path: Path) -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def short_pass() -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.set()

    await serve_then_stop(tmp_path, [Periodic("short", short_pass, 600)], started)
    assert finished.is_set()


async def test_a_failing_pass_marked_cut_short_is_logged_and_runs_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started, runs = asyncio.Event(), []

    async def failing_pass() -> None:
        runs.append(1)
        if len(runs) == 2:
            started.set()
        raise OSError("disk full")

    await serve_then_stop(tmp_path, [Periodic("failing", failing_pass, 0.01, cut_short=True)], started)
    assert len(runs) >= 2
    assert "failing failed" in caplog.text and "disk full" in caplog.text


def test_the_worker_s_retention_pass_is_cut_short_at_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: dict[str, Any] = {}

    def capture(
        _inbox: object, _ingest: object, _workers: object, _at: str, periodic: Sequence[Periodic], **_: object
    ) -> object:
        built["periodic"] = periodic
        return object()

    monkeypatch.setattr(bot.app, "create_app", capture)
    bot.app.build_app(settings_for("worker", "http://127.0.0.1:1", tmp_path / "orbit.db"))
    (retention,) = [job for job in built["periodic"] if job.name == "retention"]
    assert retention.cut_short
    assert retention.every == Retention.EVERY_SECONDS
    assert all(not job.cut_short for job in built["periodic"] if job.name != "retention")
