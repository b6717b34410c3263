"""The report renders in linear time, bounded: at most 200 rows a table and 60,000 bytes in all.

A report.json of 8,000 rows took tens of seconds to render (each per-class row was compared with
every main one) and produced a comment GitHub refuses. The timing is in bench/report_render.py;
these tests hold the caps that bound the work and the size.
"""

import asyncio
import re

from markdown_it import MarkdownIt

from runner.report.bundle import Report
from runner.report.render import markdown
from runner.report.sticky import LIMIT, compose, sections
from tests.report_fixtures import SHA

ROWS_SHOWN = 200
MAX_BYTES = 60_000  # the comment's frame and the check run's link fit in the rest of 65,535


def rows_report(rows: int) -> Report:
    """8,000 rows as the benchmark has them: main metrics, per-class metrics (each changed significantly)
    and changed params."""
    return Report.model_validate(
        {
            "facts": {"commit": SHA, "base_ref": "main", "base_commit": "b" * 40},
            "metrics": [
                {"path": "m.json", "key": f"metric_{i}", "base": 0.5, "head": 0.6, "verdict": "better"}
                for i in range(rows // 4)
            ]
            + [
                {
                    "path": "m.json",
                    "key": f"per_class.c{i}.recall",
                    "base": 0.4,
                    "head": 0.5,
                    "verdict": "better",
                }
                for i in range(rows // 2)
            ],
            "significance": [
                {
                    "key": f"per_class.c{i}.recall",
                    **{"base": 0.4, "head": 0.5, "delta": 0.1, "low": 0.05, "high": 0.15},
                    "verdict": "better",
                }
                for i in range(rows // 2)
            ],
            "params": [
                {"path": "params.yaml", "key": f"train.p{i}", "old": i, "new": i + 1}
                for i in range(rows // 4)
            ],
        }
    )


def table_rows(text: str) -> list[int]:
    """Return the body rows of each Markdown table of the text."""
    counts, inside = [], False
    for line in text.split("\n"):
        if line.startswith("|---"):
            counts.append(0)
            inside = True
        elif inside and line.startswith("| "):
            counts[-1] += 1
        else:
            inside = False
    return counts


def test_an_8000_row_report_shows_at_most_200_rows_a_table_and_says_how_many_were_left() -> None:
    text = markdown(rows_report(8_000), {})
    assert table_rows(text) == [ROWS_SHOWN, ROWS_SHOWN, ROWS_SHOWN]
    assert "… 1,800 more rows left out to fit GitHub's limit" in text, "main metrics: 2,000 - 200"
    assert "… 3,800 more rows left out to fit GitHub's limit" in text, "per-class metrics: 4,000 - 200"
    assert "**Per class** (the 4,000 classes that changed significantly, of 4,000 classes)" in text
    assert len(text.encode()) <= MAX_BYTES
    assert text.rstrip().split("\n")[-1].startswith("**Run**: commit `c0ffeea`"), "the run's facts stay"


def huge_report() -> Report:
    """Every list long and every text as long as report.json allows: far over any limit."""
    long = "x" * 5_000
    return Report.model_validate(
        {
            "facts": {"commit": SHA, "base_ref": long, "device": long, "remote": long},
            "stages": {"ran": [long] * 500, "cached": [long] * 500, "failed": "train"},
            "metrics": [
                {"path": long, "key": f"{i}{long}", "head": 1.0, "verdict": "new"} for i in range(300)
            ],
            "params": [
                {"path": "p.yaml", "key": f"{i}{long}", "old": long, "new": [long]} for i in range(300)
            ],
            "curves": [
                {
                    "title": long,
                    "x_label": long,
                    "head": [{"name": long, "x": list(range(200)), "y": [0.5] * 2_000}] * 15,
                }
            ]
            * 25,
            "confusions": [{"title": long, "classes": [long] * 200, "head": [[1] * 200] * 200}] * 30,
            "missing_plots": [long] * 500,
            "log_tail": [long] * 2_000,
        }
    )


def test_a_huge_report_is_cut_to_60000_bytes_with_every_block_closed() -> None:
    text = markdown(huge_report(), {})
    assert len(text.encode()) <= MAX_BYTES
    assert "\n\n… the rest of this report was left out to fit GitHub's size limit" in text, (
        "its own paragraph"
    )
    assert text.count("<details>") == text.count("</details>"), "a fold the cut opened is closed"
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    assert "<pre><code" in html and "the rest of this report was left out" not in "".join(
        re.findall(r"<pre>.*?</pre>", html, re.S)
    ), "the note is not swallowed by an open code block"
    assert text.rstrip().split("\n")[-1].startswith("**Run**: commit `c0ffeea`")


def test_every_list_of_a_huge_report_is_capped() -> None:
    text = markdown(huge_report(), {}, max_bytes=10_000_000)
    assert len(text.encode()) < 1_000_000, "bounded even without the byte cap"
    assert "… 100 more rows left out" in text, "300 metric rows, 200 shown"
    assert "… 5 more curves left out" in text and "… 10 more confusion tables left out" in text
    assert "170 more classes not shown." in text, "a confusion table has at most 30 classes"
    assert text.count("  line [") == 20 * 12, "20 charts of at most 12 lines each"
    assert max(len(line) for line in text.split("\n") if line.startswith("  line [")) < 400, (
        "50 points a line"
    )
    assert "480 more" in text, "20 stage names listed, the rest counted"
    log = text[text.index("The end of its log:") :].split("\n```")[1]
    assert log.count("\n") == 50 and log.count("xxx…") == 50, "the last 50 log lines, each cut"


def test_a_charts_line_of_large_values_is_drawn_whole() -> None:
    values = [123_456.789 + i for i in range(50)]
    curve = {"title": "loss", "x_label": "step", "head": [{"name": "loss", "x": values, "y": values}]}
    text = markdown(
        Report.model_validate({"facts": {"commit": SHA, "base_ref": "main"}, "curves": [curve]}), {}
    )
    line = next(line for line in text.split("\n") if line.startswith("  line ["))
    assert line.endswith("123,505.8]") and "…" not in line


def test_three_runs_of_8000_rows_fit_one_comment() -> None:
    body = None
    for run in (100, 101, 102):
        body = compose(body, run, markdown(rows_report(8_000), {}))
    assert body is not None and len(body) <= LIMIT
    assert sections(body)[0].run_id == 102


async def test_rendering_runs_in_a_thread_as_publish_calls_it() -> None:
    """`markdown` is a pure function: publish.py runs it with `asyncio.to_thread`, off the event loop."""
    report = rows_report(8_000)
    urls = {"loss.png": "https://example.invalid/loss.png"}
    in_thread = await asyncio.to_thread(markdown, report, urls)
    assert in_thread == markdown(report, urls)
