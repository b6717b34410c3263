"""bot/github/transport.py, aiohttp's pool under githubkit's httpx clients, as a hostile review tried it.

A raw HTTP/1.1 server on localhost, in a thread, answers each path as the test needs: a redirect to
another host, a stall before the headers or in the body. Failing tests are findings; the others hold
what was checked and found sound.
"""

import asyncio
import gc
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

import httpx
import pytest

from bot.github.transport import AiohttpTransport

seen: list[dict[str, str]] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        seen.append(dict(self.headers))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(201, b"{}")

    def do_GET(self) -> None:
        seen.append(dict(self.headers))
        port = cast(ThreadingHTTPServer, self.server).server_port
        if self.path == "/redirect":  # as an artifact download: to another host (blob storage)
            self._answer(302, Location=f"http://localhost:{port}/blob")
        elif self.path == "/stall-headers":
            time.sleep(1.0)
            self._answer(200, b"late")
        elif self.path == "/stall-body":
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"12345")
            self.wfile.flush()
            time.sleep(1.0)
            self.wfile.write(b"67890")
        else:
            self._answer(200, b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    seen.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def timeout(read: float = 5.0) -> httpx.Timeout:
    return httpx.Timeout(connect=2.0, read=read, write=5.0, pool=2.0)


def transport(read: float = 5.0) -> AiohttpTransport:
    return AiohttpTransport(timeout(read))


async def get(shared: AiohttpTransport, url: str, method: str = "GET") -> httpx.Response:
    # As githubkit does: a client per request, with the configured timeout (it sets the extension).
    client = httpx.AsyncClient(
        transport=shared, follow_redirects=True, timeout=httpx.Timeout(**shared._timeouts)
    )
    async with client:
        return await client.request(method, url, headers={"Authorization": "token ghs_secret"})


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_closed_event_loop_leaves_nothing_behind(server: str) -> None:
    """Finding T1 (low): a session per event loop, kept for good once its loop is closed.

    `_sessions` is a WeakKeyDictionary keyed by the loop whose value (the session, its connector)
    holds the loop: the entry never goes, so every closed loop, its selector and its pooled socket
    stay open for the transport's life (the bot's tests run many loops on one shared transport).
    """
    shared = transport()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await get(shared, f"{server}/x")

    for _ in range(5):
        asyncio.run(one())
    gc.collect()
    assert len(shared._pools.sessions) <= 1, f"{len(shared._pools.sessions)} sessions of closed loops kept"
    kept = sum(loop() is not None for loop in loops)
    assert kept <= 1, f"{kept} closed event loops (their selectors, their sockets) kept alive"


async def test_a_post_without_a_body_is_sent_as_httpx_built_it(server: str) -> None:
    """Finding T2 (informational): aiohttp adds `Content-Type: application/octet-stream` to an empty
    POST that httpx sent with none (GitHub's bodyless POSTs: cancel, rerun, ...)."""
    response = await get(transport(), f"{server}/p", method="POST")
    assert response.status_code == 201
    assert "Content-Type" not in seen[-1], f"sent {seen[-1].get('Content-Type')!r}, httpx sent none"


async def test_a_redirect_to_another_host_is_followed_by_httpx_without_the_token(server: str) -> None:
    """Checked sound: aiohttp does not follow; httpx does, and drops Authorization across hosts."""
    response = await get(transport(), f"{server}/redirect")
    assert response.status_code == 200 and response.text == "ok"
    assert [(h["Host"].split(":")[0], h.get("Authorization")) for h in seen] == [
        ("127.0.0.1", "token ghs_secret"),
        ("localhost", None),
    ]
    assert [r.status_code for r in response.history] == [302]


async def test_a_server_that_stalls_before_its_headers_is_a_read_timeout(server: str) -> None:
    """Checked sound: the read timeout applies, as httpx.ReadTimeout (a TransportError: temporary)."""
    with pytest.raises(httpx.ReadTimeout):
        await get(transport(read=0.2), f"{server}/stall-headers")


async def test_a_server_that_stalls_in_the_body_is_a_read_timeout(server: str) -> None:
    """Checked sound: the read timeout also holds while the body arrives."""
    with pytest.raises(httpx.ReadTimeout):
        await get(transport(read=0.2), f"{server}/stall-body")


async def test_a_refused_connection_is_a_connect_error() -> None:
    """Checked sound: nothing listening is httpx.ConnectError (temporary for `bot.github.calls.call`)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await get(transport(), f"http://127.0.0.1:{port}/x")


async def test_the_connection_is_reused_after_a_whole_body(server: str) -> None:
    """Checked sound: a response read whole gives its connection back to the pool."""
    shared = transport()
    for _ in range(3):
        assert (await get(shared, f"{server}/x")).text == "ok"
    connector = shared.session().connector
    assert connector is not None and sum(len(c) for c in connector._conns.values()) == 1
