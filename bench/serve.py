"""Benchmark `/predict` of the Bento against a minimal FastAPI endpoint and against the machine's limit.

In one run, on one machine:
- the Bento as built (`model.serve`, its own `MicroBatcher`);
- the same service batched by BentoML instead (`bench.serve_batchable`, `batchable=True`);
- a minimal FastAPI endpoint serving the same model (`bench.minimal_app`), the baseline;
- the in-process ceiling: decode + preprocess + forward without HTTP, batch 1 and batch 32
  (`bench.serve_ceiling`), and the HTTP floor: `GET /livez` of the Bento at concurrency 1, the least
  a request through its HTTP stack (and this load generator) costs.
Each is measured at concurrency 1, 8 and 32 in several rounds, the servers taking turns within a
round, so that a machine shared with other work slows them alike; the figures are the rounds' medians.
Prints p50/p99 latency and throughput, the ratios and whether each goal is met.
Needs the trained model: runs `dvc repro` first when `model/classifier.bentomodel` is missing.

`--also NAME=DIR:SERVICE` serves another service as well (`bentoml serve SERVICE` in DIR), to
compare with another version of the code.
"""

import argparse
import contextlib
import os
import statistics
from collections.abc import Iterator
from pathlib import Path

from bench.serve_ceiling import CORES, Ceiling, CeilingProbe
from bench.serve_load import Result, get_request, load, upload_requests
from bot.local import build_bento, held_out_samples, serving
from bot.processes import LocalServer, run_step, start_uvicorn, stop, tool
from model import MODEL_NAME
from model.classifier import import_bentomodel

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 8, 32)
REQUESTS = {1: 200, 8: 500, 32: 1000}
FLOOR_PATH, FLOOR_REQUESTS = "/livez", 500  # the cheapest answer through the Bento's HTTP stack
ROUNDS = 3
BENTO, BATCHABLE, MINIMAL = "bento", "batchable", "minimal"
FASTER = 1.1  # "measurably faster": a throughput ratio the rounds' noise does not reach


@contextlib.contextmanager
def minimal_server(model_dir: str) -> Iterator[LocalServer]:
    """Serve the minimal FastAPI endpoint for the block."""
    env = {**os.environ, "ORBIT_BENCH_MODEL_DIR": model_dir}
    server = start_uvicorn("bench.minimal_app:app", ROOT, "/docs", env)
    try:
        yield server
    finally:
        stop(server.process)


def start_servers(stack: contextlib.ExitStack, model_dir: str, also: list[str]) -> dict[str, str]:
    """Start every server under test; return each one's URL by name."""
    urls = {
        BENTO: stack.enter_context(serving(f"{MODEL_NAME}:latest", ROOT)).url,
        BATCHABLE: stack.enter_context(serving("bench.serve_batchable:BatchableClassifier", ROOT)).url,
        MINIMAL: stack.enter_context(minimal_server(model_dir)).url,
    }
    for option in also:
        name, _, place = option.partition("=")
        folder, _, service = place.partition(":")
        urls[name] = stack.enter_context(serving(service, Path(folder))).url
    return urls


def one_round(
    number: int, urls: dict[str, str], images: list[bytes], probe: CeilingProbe
) -> tuple[Ceiling, dict[tuple[str, int], Result]]:
    """Measure the ceiling, then every server at every level, the servers' order turning each round."""
    ceiling = probe.measure()
    floor = load(
        urls[BENTO], [get_request(urls[BENTO].removeprefix("http://"), FLOOR_PATH)], 1, FLOOR_REQUESTS
    )
    ceiling.settings["HTTP floor: GET /livez at c=1, ms"] = 1000 / floor.throughput
    names = list(urls)
    names = names[number % len(names) :] + names[: number % len(names)]
    results = {}
    for level in LEVELS:
        for name in names:
            url = urls[name]
            requests = upload_requests(url.removeprefix("http://"), "/predict", images)
            results[name, level] = load(url, requests, level, REQUESTS[level])
    line = "  ".join(f"{name} c={c} {r.throughput:.0f}/s" for (name, c), r in sorted(results.items()))
    print(
        f"round {number + 1}: ceiling b1 {ceiling.batch1:.0f}/s b32 {ceiling.batch32:.0f}/s  {line}",
        flush=True,
    )
    return ceiling, results


def median_result(results: list[Result]) -> Result:
    """Each figure's median over the rounds."""
    return Result(
        results[0].concurrency,
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        statistics.median(r.throughput for r in results),
    )


def print_results(results: dict[tuple[str, int], Result]) -> None:
    for (name, _), r in sorted(results.items(), key=lambda item: (item[0][0] != BENTO, item[0])):
        print(
            f"{name:<10} c={r.concurrency:<3} p50 {r.p50_ms:7.1f} ms  p99 {r.p99_ms:7.1f} ms"
            f"  {r.throughput:7.1f} req/s"
        )


def ratio_lines(
    results: dict[tuple[str, int], Result], name: str, baseline: str
) -> list[tuple[float, float]]:
    """Print `name` against `baseline` at every level; return (throughput ratio, p99 ratio) by level."""
    ratios = []
    for level in LEVELS:
        ours, theirs = results[name, level], results[baseline, level]
        ratios.append((ours.throughput / theirs.throughput, ours.p99_ms / theirs.p99_ms))
        print(
            f"c={level:<3} throughput {name}/{baseline} {ratios[-1][0]:5.2f}x"
            f"   p99 {name}/{baseline} {ratios[-1][1]:5.2f}x"
        )
    return ratios


def print_goals(results: dict[tuple[str, int], Result], ceiling: dict[str, float]) -> None:
    """Print every ratio the goals name, and whether each goal is met."""
    print(f"\nceiling in process ({CORES} cores, decode + preprocess + forward, rounds' median):")
    for setting, rate in ceiling.items():
        unit = "" if setting.endswith("ms") else " images/s"
        print(f"  {setting:<40} {rate:7.1f}{unit}")
    print(f"\n{BENTO} against the minimal FastAPI endpoint:")
    ratios = ratio_lines(results, BENTO, MINIMAL)
    print(f"\n{BENTO} (MicroBatcher) against BentoML's batchable=True:")
    batching = ratio_lines(results, BENTO, BATCHABLE)
    faster = all(t >= FASTER for t, _ in batching)
    print(
        f"MicroBatcher {'is' if faster else 'is NOT'} measurably faster ({FASTER:.2f}x or more) at all levels"
    )
    for other in sorted({name for name, _ in results} - {BENTO, MINIMAL}):
        print(f"\n{other} against the minimal FastAPI endpoint:")
        ratio_lines(results, other, MINIMAL)
    floor_s = ceiling["HTTP floor: GET /livez at c=1, ms"] / 1000
    bound = 1 / (1 / ceiling["batch 1"] + floor_s)
    print(
        f"\nat c=1 a request costs the ceiling's time and at least the HTTP floor: at most {bound:.0f} req/s,"
        f" {bound / ceiling['batch 1']:.2f}x the ceiling"
    )
    single = results[BENTO, 1].throughput / ceiling["batch 1"]
    full = results[BENTO, 32].throughput / ceiling["batch 32"]
    print(f"\n{BENTO} c=1 / ceiling batch 1: {single:.2f}x   {BENTO} c=32 / ceiling batch 32: {full:.2f}x")
    goals = {
        "throughput >= 1.0x minimal at c=1, 8 and 32": all(t >= 1.0 for t, _ in ratios),
        "c=32: throughput >= 1.5x minimal and p99 <= 0.5x": ratios[-1][0] >= 1.5 and ratios[-1][1] <= 0.5,
        ">= 0.8x the in-process ceiling (c=1 / batch 1, c=32 / batch 32)": min(single, full) >= 0.8,
    }
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--also", action="append", default=[], metavar="NAME=DIR:SERVICE")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    options = parser.parse_args()
    bentomodel = ROOT / "model/classifier.bentomodel"
    if not bentomodel.exists():
        run_step("train the pipeline", [tool("dvc"), "repro"], ROOT)
    stored = import_bentomodel(bentomodel)
    images = [path.read_bytes() for path, _ in held_out_samples(ROOT, per_class=3)]
    build_bento(ROOT)
    probe = CeilingProbe(str(stored.path), images)
    ceilings: list[Ceiling] = []
    rounds: list[dict[tuple[str, int], Result]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(probe.close)
        urls = start_servers(stack, str(stored.path), options.also)
        for number in range(options.rounds):
            ceiling, results = one_round(number, urls, images, probe)
            ceilings.append(ceiling)
            rounds.append(results)
    medians = {key: median_result([r[key] for r in rounds]) for key in rounds[0]}
    settings = {s: statistics.median(c.settings[s] for c in ceilings) for s in ceilings[0].settings}
    settings["batch 1"] = statistics.median(c.batch1 for c in ceilings)
    settings["batch 32"] = statistics.median(c.batch32 for c in ceilings)
    print(f"\nmedians of {options.rounds} rounds ({CORES} cores, load average {os.getloadavg()[0]:.1f}):")
    print_results(medians)
    print_goals(medians, settings)


if __name__ == "__main__":
    main()
