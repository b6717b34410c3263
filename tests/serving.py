"""Serve an ASGI app on localhost in a thread, for doubles that tests talk to over real HTTP."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import uvicorn
from starlette import responses

from bot.processes import free_port


@contextmanager
def serve_in_thread(app: Any, port: int | None = None, **tls: Any) -> Iterator[str]:  # any ASGI app
    """Serve `app` on `port` (a free one by default) until the block ends; yield its base URL.

    `tls`: uvicorn's `ssl_*` options; with a certificate, the URL is https.
    """
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **tls)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"{'https' if tls.get('ssl_certfile') else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class JSONResponse(responses.JSONResponse):
    """Starlette's JSON response, rendered by orjson: a double stands in for a fast remote service,
    and on a shared machine its own CPU time would be counted against the client it serves."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
