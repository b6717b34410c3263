"""The report as Markdown: the PR comment, the check run summary, report.md (and report.html's source).

Every value of report.json comes from a job that ran a pull request's code: it reaches the Markdown
only through `runner.report.inert`. The rendering is linear in the report's size and bounded: at
most `MAX_ROWS` rows a table and `MAX_BYTES` in all, with a line saying what was left out.
"""

import base64
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from runner.report import inert
from runner.report.bundle import MetricRow, ParamChange, Report, Significance
from runner.report.perclass import per_class_section, split_per_class
from runner.report.redact import CONTEXT_LINES, redact_lines
from runner.report.tables import LEFT_OUT, MAX_ROWS, plural, table
from runner.report.text import confusion_table, mermaid, number
from runner.report.verdicts import change, verdict_line

ImageUrl = Callable[[str], str]
ImageUrls = ImageUrl | Mapping[str, str]
MAX_BYTES = 60_000  # of the whole Markdown: room for the sticky comment's frame within 65,536
MAX_LOG_LINES = 50
MAX_PLOTS = 20  # of each kind: curves, confusion matrices, images
MAX_LISTED = 20  # stage names, plots not drawn
IMAGE_CHANGE = {True: " (changed since base)", False: " (no visible change since base)", None: ""}
CUT_NOTE = (
    "\n\n… the rest of this report was left out to fit GitHub's size limit; "
    "the run's `orbit-report` artifact has all of it."
)
_URL_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in " ()<>\"'\\`\t\r\n"})


def short(sha: str | None) -> str:
    """Return the seven-character form of a commit (hex digits only: it comes from the job)."""
    return "".join(c for c in (sha or "") if c in "0123456789abcdef")[:7] or "?"


def duration(seconds: float | None) -> str:
    """Format seconds as `1 h 2 min`, `1 min 26 s` or `8.2 s`."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"


def headline(report: Report) -> str:
    """Return the report's first line: outcome, commit and base."""
    facts = report.facts
    against = f"against {inert.code(facts.base_ref)} (`{short(facts.base_commit)}`)"
    if report.failed:
        stage = inert.code(report.stages.failed or "")
        return f"### Training failed at stage {stage} — `{short(facts.commit)}`"
    return f"### Training report for `{short(facts.commit)}` {against}"


def _value(value: float | None) -> str:
    return "—" if value is None else number(value)


def _metric_name(row: MetricRow, several_files: bool) -> str:
    return inert.text(f"{row.path}: {row.key}" if several_files else row.key)


def metrics_table(
    rows: list[MetricRow],
    with_base: bool,
    several_files: bool,
    max_rows: int = MAX_ROWS,
    judged: Mapping[str, Significance] | None = None,
) -> str:
    """Return metrics as a table: base, head and the change (judged where `judged` has the metric)."""
    if not with_base:
        lines: Iterator[str] = (f"| {_metric_name(r, several_files)} | {_value(r.head)} |" for r in rows)
        return table(["metric", "head"], lines, len(rows), max_rows)
    judged = judged or {}
    lines = (
        f"| {_metric_name(r, several_files)} | {_value(r.base)} | {_value(r.head)}"
        f" | {change(r, judged.get(r.key))} |"
        for r in rows
    )
    return table(["metric", "base", "head", "change"], lines, len(rows), max_rows)


def metrics_section(report: Report, max_rows: int = MAX_ROWS) -> list[str]:
    """Return the metrics: main ones in a table, the classes worth showing, other nested ones folded."""
    if not report.metrics:
        return ["**Metrics**: none were produced."]
    several = len({row.path for row in report.metrics}) > 1
    judged = {row.key: row for row in report.significance}
    classes, rows = split_per_class(report.metrics)
    main: list[MetricRow] = []
    nested: list[MetricRow] = []
    for row in rows:  # one pass: the rows are not compared with each other
        (nested if "." in row.key else main).append(row)
    if not main:
        main, nested = nested, []
    parts = ["**Metrics**"]
    if not report.base_has_metrics:
        base = inert.code(report.facts.base_ref)
        parts.append(f"First run: {base} has no metrics yet, so the head's alone.")
    if main:
        parts.append(metrics_table(main, report.base_has_metrics, several, max_rows, judged))
    parts += per_class_section(report, classes, judged, max_rows)
    if nested:
        changed = sum(row.verdict in ("better", "worse", "changed") for row in nested)
        more = f"{plural(len(nested), 'more metric')} ({changed:,} changed)"
        folded = metrics_table(nested, report.base_has_metrics, several, max_rows, judged)
        parts.append(f"<details><summary>{more}</summary>\n\n\n{folded}\n\n\n</details>")
    return parts


def _param_value(value: object) -> str:
    return inert.code(value, cell=True)


def params_section(changes: list[ParamChange], max_rows: int = MAX_ROWS) -> list[str]:
    """Return the changed parameters, old → new, or a line saying none changed."""
    if not changes:
        return ["**Params**: no parameter changed."]
    several = len({change.path for change in changes}) > 1

    def row(change: ParamChange) -> str:
        name = inert.text(f"{change.path}: {change.key}" if several else change.key)
        old = "—" if change.added else _param_value(change.old)
        new = "—" if change.removed else _param_value(change.new)
        return f"| {name} | {old} | {new} |"

    text = table(["param", "base", "head"], (row(c) for c in changes), len(changes), max_rows)
    return ["**Params**\n\n" + text]


def _folded(summary: str, body: str) -> str:
    """Return body folded under a summary; the summary is raw HTML, so it is orbit's own or inert."""
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _link(url: str) -> str | None:
    """Return an image URL fit for a Markdown link (https, http, a PNG/JPEG/GIF data URI or a plain name)."""
    if url.startswith(("https://", "http://", "data:image/png;", "data:image/jpeg;", "data:image/gif;")):
        return url.translate(_URL_ESCAPES)
    return inert.safe_name(url)


def _image(title: str, name: str | None, images: ImageUrls) -> str | None:
    """Return the Markdown image of a plot file, or a line saying why it is not shown."""
    if name is None:
        return None
    safe = inert.safe_name(name)
    url = None
    if safe is not None:
        url = _link(images.get(safe, "") if isinstance(images, Mapping) else images(safe))
    if url is None:
        return f"The image {inert.code(name)} is not shown: it is not a plain file name of the bundle."
    return f"![{inert.text(title)}]({url})"


def _left_out(count: int, what: str) -> list[str]:
    return [f"… {plural(count, what)} {LEFT_OUT}."] if count > 0 else []


def plots_section(report: Report, images: ImageUrls) -> list[str]:
    """Return each plot as an image with its text form folded beneath it."""
    parts = []
    for curve in report.curves[:MAX_PLOTS]:
        title = inert.text(curve.title)
        chart, legend = mermaid(curve)
        image = _image(curve.title, curve.image, images)
        folded = _folded(f"{inert.html_text(curve.title)} as a chart", f"{legend}\n\n{chart}")
        parts.append("\n\n".join([f"#### {title}", *([image] if image else []), folded]))
    parts += _left_out(len(report.curves) - MAX_PLOTS, "more curve")
    for confusion in report.confusions[:MAX_PLOTS]:
        title = inert.text(confusion.title)
        image = _image(confusion.title, confusion.image, images)
        note = "head; base in brackets where it differs" if confusion.base is not None else "head"
        summary = f"{inert.html_text(confusion.title)} as a table ({note})"
        folded = _folded(summary, confusion_table(confusion))
        parts.append("\n\n".join([f"#### {title}", *([image] if image else []), folded]))
    parts += _left_out(len(report.confusions) - MAX_PLOTS, "more confusion table")
    for plot in report.images[:MAX_PLOTS]:
        image = _image(plot.title, plot.image, images)
        parts.append(f"#### {inert.text(plot.title)}{IMAGE_CHANGE[plot.changed]}\n\n{image}")
    parts += _left_out(len(report.images) - MAX_PLOTS, "more image")
    if report.missing_plots:
        listed = _listed(
            [inert.text(line) for line in report.missing_plots[:MAX_LISTED]], report.missing_plots
        )
        parts.append("Plots not drawn: " + "; ".join(listed) + ".")
    return parts


def _listed(shown: list[str], every: list[str]) -> list[str]:
    left = len(every) - len(shown)
    return [*shown, f"{left:,} more"] if left > 0 else shown


def facts_section(report: Report) -> list[str]:
    """Return the run facts: commit, base, duration, device, stages, remote."""
    facts, stages = report.facts, report.stages
    ran = ", ".join(_listed([inert.code(s) for s in stages.ran[:MAX_LISTED]], stages.ran)) or "none"
    cached = ", ".join(_listed([inert.code(s) for s in stages.cached[:MAX_LISTED]], stages.cached)) or "none"
    lines = [
        f"commit `{short(facts.commit)}` · base {inert.code(facts.base_ref)} (`{short(facts.base_commit)}`)",
        f"duration {duration(facts.duration_seconds)} · device {inert.text(facts.device)}",
        f"stages run: {ran} · unchanged or restored: {cached}",
        f"DVC remote {inert.text(facts.remote)}" if facts.remote else "no DVC remote configured",
    ]
    return ["**Run**: " + "<br>".join(lines)]


def failure_section(report: Report) -> list[str]:
    """Return the failed stage's last log lines, redacted once more (report.json is not trusted)."""
    if not report.failed:
        return []
    # Lines are redacted at twice the length shown, so a secret that starts where a line is cut
    # for display is still whole (and blanked out) when redacted.
    recent = [
        line[: 2 * inert.MAX_FENCE_LINE] for line in report.log_tail[-(MAX_LOG_LINES + CONTEXT_LINES) :]
    ]
    block = inert.fence(redact_lines(recent)[-MAX_LOG_LINES:])
    return [f"Stage {inert.code(report.stages.failed or '')} failed. The end of its log:\n\n{block}"]


def _fit(first: str, middle: list[str], last: str, max_bytes: int) -> str:
    """Join the parts, leaving out (or cutting) middle ones so that the whole fits `max_bytes`."""
    joiner = "\n\n"
    room = max_bytes - inert.size(first) - inert.size(last) - 2 * len(joiner) - 1
    kept: list[str] = []
    for part in middle:
        cost = inert.size(part) + len(joiner)
        if cost <= room - inert.size(CUT_NOTE):
            kept.append(part)
            room -= cost
            continue
        kept.append(inert.cut(part, room - len(joiner), CUT_NOTE))
        break
    return joiner.join([first, *kept, last]) + "\n"


def markdown(
    report: Report, images: ImageUrls, *, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES
) -> str:
    """Return the whole report as GitHub Markdown, `images` giving each plot file's URL.

    A pure function when `images` is a mapping (or a function without I/O): no I/O, no shared
    state, so the bot can run it off the event loop (`await asyncio.to_thread(markdown, ...)`).
    Linear in the report's size; at most `max_rows` rows a table and `max_bytes` UTF-8 bytes in
    all (so under GitHub's 65,536 characters of a comment and 65,535 of a check run summary).
    """
    middle = [
        *verdict_line(report),
        *failure_section(report),
        *metrics_section(report, max_rows),
        *params_section(report.params, max_rows),
        *plots_section(report, images),
    ]
    return _fit(headline(report), middle, facts_section(report)[0], max_bytes)


def inline_image(folder: Path) -> ImageUrl:
    """Return an ImageUrl that embeds each image file of `folder` as a data URI (for report.html)."""
    kinds = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"GIF8": "gif"}

    def url(name: str) -> str:
        path = folder / name
        if inert.safe_name(name) is None or not path.is_file():
            return ""
        data = path.read_bytes()
        kind = next((k for magic, k in kinds.items() if data.startswith(magic)), None)
        return f"data:image/{kind};base64," + base64.b64encode(data).decode() if kind else ""

    return url
