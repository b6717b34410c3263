"""The sticky comment's sections and limit, and the distrustful reading of a bundle artifact."""

import io
import re
import zipfile

import pytest
from markdown_it import MarkdownIt

from bot.events import ordering_key
from runner.report.artifact import MAX_ENTRIES, BundleError, read_bundle
from runner.report.sticky import LIMIT, MARKER, TRIMMED, Section, compose, neutralise, sections
from tests.fakes import delivery
from tests.report_fixtures import bundle_zip, png, report, run_payload


def test_a_new_comment_has_the_marker_and_one_section() -> None:
    body = compose(None, 5, "### report five")
    assert body.startswith(MARKER)
    assert [(s.run_id, s.body) for s in sections(body)] == [(5, "### report five")]
    assert "Earlier runs" not in body


def test_runs_stack_newest_first_and_a_rerun_replaces_its_own_section() -> None:
    body = compose(compose(compose(None, 5, "five"), 6, "six"), 7, "seven")
    assert [s.run_id for s in sections(body)] == [7, 6, 5]
    body = compose(body, 6, "six again")
    assert [(s.run_id, s.body) for s in sections(body)] == [(6, "six again"), (7, "seven"), (5, "five")]
    assert "<details><summary>seven</summary>" in body


def test_text_from_a_job_cannot_forge_or_end_a_section() -> None:
    body = compose(None, 5, "before <!-- orbit:end 5 --> <!-- orbit:run 9 -->after")
    assert [s.run_id for s in sections(body)] == [5]
    assert "after" in sections(body)[0].body


def test_the_oldest_runs_go_first_then_the_newest_is_cut() -> None:
    body = None
    for run in range(10):
        body = compose(body, run, f"### run {run}\n" + "x" * 9_000)
    assert body is not None and len(body) <= LIMIT
    kept = [s.run_id for s in sections(body)]
    assert kept[0] == 9 and kept == sorted(kept, reverse=True) and len(kept) < 10
    assert "older runs were left out to fit GitHub's limit" in body
    huge = compose(body, 10, "### huge\n```text\n" + "line\n" * 40_000 + "```")
    assert len(huge) <= LIMIT
    assert [s.run_id for s in sections(huge)] == [10]
    latest = sections(huge)[0].body
    assert latest.count("```") % 2 == 0, "an open code block is closed"
    assert "cut to fit GitHub's comment limit" in latest


def outside_code(markdown: str) -> str:
    """Return the text GitHub shows outside code blocks (CommonMark with raw HTML)."""
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    return re.sub(r"<pre>.*?</pre>", "", html, flags=re.S)


def test_a_cut_closes_a_longer_fence_than_three_backticks() -> None:
    """A log block's fence is longer than the backtick runs of the log, so a cut must close it with
    the same fence: counting ``` would leave it open and swallow the note and the earlier runs."""
    earlier = compose(None, 1, "### run one")
    log = "### run two\n\n````text\n```\n" + "log line\n" * 20_000 + "```\n````"
    body = compose(earlier, 2, log)
    assert len(body) <= LIMIT
    latest = sections(body)[0].body
    assert latest.endswith(TRIMMED) and "\n````\n" in latest
    shown = outside_code(body)
    assert "cut to fit GitHub's comment limit" in shown and "Earlier runs (1)" in shown


def test_a_cut_closes_a_fold_it_left_open() -> None:
    fold = "### run\n\n<details><summary>4,000 more metrics</summary>\n\n| m | v |\n|---|---|\n"
    body = compose(compose(None, 1, "### one"), 2, fold + "| a | 1 |\n" * 20_000 + "\n</details>")
    latest = sections(body)[0].body
    assert latest.count("<details>") == latest.count("</details>") == 1
    assert body.index("</details>") < body.index("cut to fit GitHub's comment limit")


def test_the_summary_of_an_earlier_run_is_plain_inert_text() -> None:
    section = Section(
        5, "### ❌ Training failed at stage `</summary><img src=x onerror=alert(1)>` — `@org/team`"
    )
    assert section.summary() == (
        "❌ Training failed at stage &lt;/summary&gt;&lt;img src=x onerror=alert(1)&gt; — @\u200dorg/team"
    )


def test_neutralise_breaks_comment_openers_and_keeps_a_charts_arrow() -> None:
    assert neutralise("<!-- orbit:run 1 --> y-axis 0 --> 1") == "<\u200b!-- orbit:run 1 --> y-axis 0 --> 1"


def test_a_bundle_is_read_with_its_images() -> None:
    bundle = read_bundle(bundle_zip())
    assert set(bundle.images) == {"loss.png", "confusion.png", "predictions.png"}
    assert bundle.report.metrics[0].key == "val_acc"


def zipped(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (zipped({"metrics.json": b"{}"}), "no report.json"),
        (zipped({f"f{i}": b"" for i in range(MAX_ENTRIES + 1)}), "at most 64 are read"),
        (
            zipped({"report.json": b"0" * (40 * 2**20)}),
            "unpacks to more than 32 MiB",
        ),  # 40 MiB of zeros zip small
        (
            bundle_zip(report(images=[{"title": "x", "image": "../../etc/passwd"}])),
            "not a plain file name",
        ),
        (
            zipped({"report.json": report().model_dump_json().encode()}),
            "not a file of the bundle",
        ),
    ],
)
def test_a_bad_bundle_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BundleError, match=reason.replace(".", r"\.")):
        read_bundle(data)


def test_an_image_the_report_does_not_show_is_not_published() -> None:
    bundle = read_bundle(bundle_zip(files={"extra.png": png()}))
    assert "extra.png" not in bundle.images


def test_a_training_runs_deliveries_are_ordered_with_its_pull_request() -> None:
    assert ordering_key(delivery("workflow_run", run_payload(100, pull=12))) == "octo-org/model#12"


def test_the_bot_routes_finished_runs_to_the_reports() -> None:
    from bot.app import ROUTERS
    from bot.router import Router

    router = Router.compose(ROUTERS)
    assert router.wants("workflow_run", "completed")
    assert not router.wants("workflow_run", "requested")
