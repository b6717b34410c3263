"""A cheap HTTP/1.1 load generator for the serving benchmarks: pre-encoded requests on keep-alive sockets.

httpx spends about a millisecond of CPU a request; on a two-core machine that is CPU taken from the
server it measures. Here a request is a prepared byte string and a response is read by its framing
alone (Content-Length or chunked), so the client costs a few tens of microseconds a request.
"""

import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Result:
    """One load level against one server."""

    concurrency: int
    p50_ms: float
    p99_ms: float
    throughput: float


def upload_requests(host: str, path: str, images: list[bytes], field: str = "image") -> list[bytes]:
    """Return each image as a complete multipart `POST path` request, encoded once."""
    requests = []
    for data in images:
        request = httpx.Request("POST", f"http://{host}{path}", files={field: ("x.png", data, "image/png")})
        body = request.read()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: {request.headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def get_request(host: str, path: str) -> bytes:
    """Return `GET path` as a complete request."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        await reader.readexactly(size + 2)  # the chunk and its CRLF
        if size == 0:
            return


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> float:
    """Send one request on a keep-alive connection; return how long the answer took. Only 200 is right."""
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        status = head.split(b"\r\n", 1)[0].decode()
        raise RuntimeError(f"the server answered {status}")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
    }
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    else:
        await _read_chunked(reader)
    return time.perf_counter() - started


async def _run(url: str, requests: list[bytes], concurrency: int, total: int, warmup: int) -> Result:
    host, port = url.removeprefix("http://").split(":")
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]
    latencies: list[float] = []

    async def worker(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], numbers: range) -> None:
        for number in numbers:
            latencies.append(await exchange(*connection, requests[number % len(requests)]))

    def share(count: int, index: int) -> range:
        return range(index, count, concurrency)

    await asyncio.gather(*(worker(c, share(warmup, i)) for i, c in enumerate(connections)))
    latencies.clear()
    began = time.perf_counter()
    await asyncio.gather(*(worker(c, share(total, i)) for i, c in enumerate(connections)))
    elapsed = time.perf_counter() - began
    for _, writer in connections:
        writer.close()
    ordered = sorted(latencies)
    return Result(
        concurrency,
        statistics.median(ordered) * 1000,
        ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1000,
        total / elapsed,
    )


def load(url: str, requests: list[bytes], concurrency: int, total: int) -> Result:
    """Send `total` requests over `concurrency` connections (after a warm-up); return latency and rate."""
    return asyncio.run(_run(url, requests, concurrency, total, warmup=2 * concurrency))
