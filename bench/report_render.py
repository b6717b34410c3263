"""Benchmark rendering a report.json with many rows, as the bot does for every finished run.

A report with 8,000 table rows (a quarter main metrics, half per-class metrics, a quarter changed
params) against a 100-row baseline, in the same run: the Markdown the bot posts (`render.markdown`,
which publish.py runs off the event loop) and the page the job writes (`html.html`). Goal: 8,000
rows under a second, within a small factor of the baseline (the caps keep the work linear, bounded).
"""

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runner.report.bundle import Report
from runner.report.html import html
from runner.report.render import markdown

REPEATS = 3
SIZES = (100, 8_000)
GOAL_SECONDS = 1.0


def big_report(rows: int) -> Report:
    """Return a report of `rows` table rows: main metrics, per-class metrics and changed params."""
    main = [
        {"path": "m.json", "key": f"metric_{i}", "base": 0.5, "head": 0.5 + i * 1e-5, "verdict": "better"}
        for i in range(rows // 4)
    ]
    nested = [
        {"path": "m.json", "key": f"per_class.c{i}.recall", "base": 0.4, "head": 0.6, "verdict": "changed"}
        for i in range(rows // 2)
    ]
    params = [{"path": "params.yaml", "key": f"train.p{i}", "old": i, "new": i + 1} for i in range(rows // 4)]
    classes = [f"class_{i}" for i in range(10)]
    return Report.model_validate(
        {
            "facts": {"commit": "c0ffee" + "0" * 34, "base_ref": "main", "base_commit": "b" * 40},
            "metrics": main + nested,
            "params": params,
            "confusions": [
                {
                    "title": "Confusion",
                    "classes": classes,
                    "head": [[int(i == j) * 10 for j in range(10)] for i in range(10)],
                }
            ],
        }
    )


def seconds(action: Callable[[], object]) -> float:
    """Return the median time of a few runs (one run when it takes over 5 s)."""
    times: list[float] = []
    while len(times) < REPEATS and sum(times) < 5:
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        results = {}
        for rows in SIZES:
            report = big_report(rows)
            text = markdown(report, lambda name: name)  # also warms up
            results[rows] = (
                seconds(lambda report=report: markdown(report, lambda name: name)),  # type: ignore[misc]
                seconds(lambda report=report: html(report, folder)),  # type: ignore[misc]
                len(text.encode()),
            )
    base_md, base_html, _ = results[SIZES[0]]
    for rows, (md, page, size) in results.items():
        print(
            f"{rows:>6} rows: markdown {md * 1000:8.1f} ms ({md / base_md:5.1f}x), "
            f"html {page * 1000:8.1f} ms ({page / base_html:5.1f}x), markdown {size:,} bytes"
        )
    worst = results[SIZES[-1]][0]
    verdict = "met" if worst < GOAL_SECONDS else "NOT met"
    print(f"  goal: {SIZES[-1]:,} rows under {GOAL_SECONDS:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
