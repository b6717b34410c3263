"""The HTTP transport under githubkit's httpx clients: aiohttp's connection pool, shared by every call.

httpx stays what githubkit speaks (auth flow, redirects, decoding, timeouts per request); only the
wire is aiohttp's, whose C parser and pool cost a fifth of the CPU time of httpcore's for a call to
GitHub (httpcore also scans every pooled connection on each request, which grows with concurrency).
The bytes pass through as they came: httpx decompresses, follows redirects and keeps cookies itself.
"""

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from yarl import URL

from bot.aio_pool import LoopPool, LoopSessions

CHUNK = 64 * 1024
# Headers aiohttp writes itself from the URL and the body; httpx's copies would be sent twice.
_OWN_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests over one aiohttp pool per event loop; every request gets `timeout` unless set.

    A request built outside a client carries no timeout (githubkit's installation token request is
    one): it gets `timeout`, as the client's requests do. `aclose` keeps the pool: githubkit opens a
    client per request and closes it after, which must not drop the other requests' connections.
    """

    def __init__(self, timeout: httpx.Timeout, max_connections: int = 100) -> None:
        self._timeouts = timeout.as_dict()
        self._max_connections = max_connections
        self._tls = httpx.create_ssl_context()  # the certificates httpx itself would trust
        self._pools = LoopSessions(self._new_session)

    def session(self) -> aiohttp.ClientSession:
        """Return this event loop's session (calls sent straight share its connections)."""
        return self._pools.session()

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=LoopPool(ssl=self._tls, limit=self._max_connections),
            auto_decompress=False,  # httpx decodes, as it advertised
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
            trust_env=False,  # httpx chose this transport for the URL, proxies included
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request; return the response with its body still to be read (streamed)."""
        timeouts = request.extensions.get("timeout") or self._timeouts
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in _OWN_HEADERS
        ]
        body = await request.aread()
        try:
            response = await self.session().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                # aiohttp would add a Content-Type to a POST httpx sent without one (an empty body)
                skip_auto_headers=() if "content-type" in request.headers else ("Content-Type",),
                timeout=client_timeout(timeouts),
            )
        except aiohttp.ConnectionTimeoutError as error:
            raise httpx.ConnectTimeout(str(error), request=request) from error
        except TimeoutError as error:
            raise httpx.ReadTimeout(str(error) or "timed out", request=request) from error
        except aiohttp.ClientConnectorError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        except aiohttp.ClientError as error:
            raise httpx.ReadError(str(error) or type(error).__name__, request=request) from error
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        """Keep the pool open: it lives as long as the process."""

    def __del__(self) -> None:
        # The sessions go with the transport (a process's end, a test's client): not "unclosed" ones.
        self._pools.detach_all()


class _Body(httpx.AsyncByteStream):
    """A response's body as aiohttp receives it; closing it early gives up the connection."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except TimeoutError as error:
            raise httpx.ReadTimeout(str(error) or "timed out", request=self._request) from error
        except aiohttp.ClientError as error:
            raise httpx.ReadError(str(error) or type(error).__name__, request=self._request) from error

    async def aclose(self) -> None:
        """Give the connection back (to the pool when the body was read whole, else closed)."""
        self._response.release()


def client_timeout(timeouts: dict[str, Any]) -> aiohttp.ClientTimeout:
    """Return httpx's (connect, read, write, pool) seconds as aiohttp's timeouts."""
    connect, read, pool = timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool")
    waiting = None if connect is None or pool is None else connect + pool  # a free connection, then connect
    return aiohttp.ClientTimeout(total=None, connect=waiting, sock_connect=connect, sock_read=read)
