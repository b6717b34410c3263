"""Benchmark `/predict` of the Bento against a minimal FastAPI endpoint serving the same model.

Prints p50/p99 latency and throughput at concurrency 1, 8 and 32 for both, and the ratios.
Needs the trained model: runs `dvc repro` first when `model/classifier.bentomodel` is missing.
"""

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.local import build_bento, held_out_samples, serving
from bot.processes import (
    LocalServer,
    run_step,
    start_uvicorn,
    stop,
    tool,
)
from model import MODEL_NAME
from model.classifier import import_bentomodel

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 8, 32)
REQUESTS = {1: 150, 8: 400, 32: 800}


@dataclass(frozen=True)
class Result:
    concurrency: int
    p50_ms: float
    p99_ms: float
    throughput: float


def encode_uploads(images: list[bytes]) -> list[tuple[bytes, str]]:
    """Pre-encode each multipart body once, so the load generator spends little CPU per request."""
    encoded = []
    for data in images:
        request = httpx.Request("POST", "http://x/predict", files={"image": ("x.png", data, "image/png")})
        encoded.append((request.read(), request.headers["content-type"]))
    return encoded


async def _load(url: str, images: list[tuple[bytes, str]], concurrency: int, total: int) -> Result:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        counter = iter(range(total))

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                body, content_type = images[i % len(images)]
                response = await client.post(
                    f"{url}/predict", content=body, headers={"content-type": content_type}
                )
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, 4))))  # warm-up connections
        latencies.clear()
        counter = iter(range(total))
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return Result(
        concurrency,
        statistics.median(ordered) * 1000,
        ordered[int(len(ordered) * 0.99) - 1] * 1000,
        total / elapsed,
    )


def measure(name: str, url: str, images: list[tuple[bytes, str]]) -> list[Result]:
    results = [asyncio.run(_load(url, images, level, REQUESTS[level])) for level in LEVELS]
    for r in results:
        print(
            f"{name:<8} c={r.concurrency:<3} p50 {r.p50_ms:7.1f} ms  p99 {r.p99_ms:7.1f} ms"
            f"  {r.throughput:7.1f} req/s",
            flush=True,
        )
    return results


def minimal_server(model_dir: str) -> LocalServer:
    env = {**os.environ, "ORBIT_BENCH_MODEL_DIR": model_dir}
    return start_uvicorn("bench.minimal_app:app", ROOT, "/docs", env)


def main() -> None:
    bentomodel = ROOT / "model/classifier.bentomodel"
    if not bentomodel.exists():
        run_step("train the pipeline", [tool("dvc"), "repro"], ROOT)
    stored = import_bentomodel(bentomodel)
    images = encode_uploads([path.read_bytes() for path, _ in held_out_samples(ROOT, per_class=3)])
    build_bento(ROOT)
    with serving(f"{MODEL_NAME}:latest", ROOT) as bento:
        bento_results = measure("bento", bento.url, images)
    minimal = minimal_server(str(stored.path))
    try:
        minimal_results = measure("minimal", minimal.url, images)
    finally:
        stop(minimal.process)
    print()
    for b, m in zip(bento_results, minimal_results, strict=True):
        print(
            f"c={b.concurrency:<3} throughput bento/minimal {b.throughput / m.throughput:5.2f}x"
            f"   p99 bento/minimal {b.p99_ms / m.p99_ms:5.2f}x"
        )
    goal = (
        bento_results[-1].throughput >= minimal_results[-1].throughput
        and bento_results[-1].p99_ms <= 1.5 * minimal_results[-1].p99_ms
    )
    print(f"goal at c=32 (throughput >= 1.0x, p99 <= 1.5x): {'met' if goal else 'NOT met'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
