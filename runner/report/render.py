"""The report as Markdown (the PR comment and check run body) and as a self-contained HTML page."""

import base64
from collections.abc import Callable
from pathlib import Path

from runner.report.bundle import MetricRow, ParamChange, Report
from runner.report.text import code, confusion_table, escape, log_block, mermaid, number

ImageUrl = Callable[[str], str]
ARROWS = {"better": "🟢 better", "worse": "🔴 worse", "same": "=", "changed": "changed", "new": "new"}


def short(sha: str | None) -> str:
    """Return the seven-character form of a commit (hex digits only: it comes from the job)."""
    return "".join(c for c in (sha or "") if c in "0123456789abcdef")[:7] or "?"


def duration(seconds: float | None) -> str:
    """Format seconds as `1 h 2 min`, `1 min 26 s` or `8.2 s`."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"


def headline(report: Report) -> str:
    """Return the report's first line: outcome, commit and base."""
    facts = report.facts
    against = f"against {code(facts.base_ref)} (`{short(facts.base_commit)}`)"
    if report.failed:
        stage = code(report.stages.failed or "")
        return f"### ❌ Training failed at stage {stage} — `{short(facts.commit)}`"
    return f"### 📊 Training report for `{short(facts.commit)}` {against}"


def _value(value: float | None) -> str:
    return "—" if value is None else number(value)


def _change(row: MetricRow) -> str:
    if row.verdict == "missing":
        return "missing in head"
    delta = row.delta
    if delta is None or row.verdict == "new":
        return "new"
    arrow = "▲" if delta > 0 else "▼" if delta < 0 else ""
    mark = ARROWS[row.verdict]
    return mark if row.verdict == "same" else f"{arrow} {'+' if delta > 0 else ''}{number(delta)} {mark}"


def _metric_name(row: MetricRow, several_files: bool) -> str:
    return escape(f"{row.path}: {row.key}" if several_files else row.key)


def metrics_table(rows: list[MetricRow], with_base: bool, several_files: bool) -> str:
    """Return metrics as a table: base, head and the judged change, or the head alone."""
    if not with_base:
        lines = ["| metric | head |", "|---|---|"]
        lines += [f"| {_metric_name(r, several_files)} | {_value(r.head)} |" for r in rows]
        return "\n".join(lines)
    lines = ["| metric | base | head | change |", "|---|---|---|---|"]
    lines += [
        f"| {_metric_name(r, several_files)} | {_value(r.base)} | {_value(r.head)} | {_change(r)} |"
        for r in rows
    ]
    return "\n".join(lines)


def metrics_section(report: Report) -> list[str]:
    """Return the metrics part: main metrics in a table, nested ones (per class) folded."""
    if not report.metrics:
        return ["**Metrics**: none were produced."]
    several = len({row.path for row in report.metrics}) > 1
    main = [row for row in report.metrics if "." not in row.key] or report.metrics
    nested = [row for row in report.metrics if row not in main]
    parts = ["**Metrics**"]
    if not report.base_has_metrics:
        parts.append(f"First run: {code(report.facts.base_ref)} has no metrics yet, so the head's alone.")
    parts.append(metrics_table(main, report.base_has_metrics, several))
    if nested:
        changed = sum(row.verdict in ("better", "worse", "changed") for row in nested)
        more = f"{len(nested)} more metric{'s' if len(nested) > 1 else ''}"
        parts.append(f"<details><summary>{more} ({changed} changed)</summary>\n")
        parts += [metrics_table(nested, report.base_has_metrics, several), "\n</details>"]
    return parts


def _param_value(value: object) -> str:
    return code(str(value))


def params_section(changes: list[ParamChange]) -> list[str]:
    """Return the changed parameters, old → new, or a line saying none changed."""
    if not changes:
        return ["**Params**: no parameter changed."]
    several = len({change.path for change in changes}) > 1
    lines = ["**Params**\n", "| param | base | head |", "|---|---|---|"]
    for change in changes:
        name = escape(f"{change.path}: {change.key}" if several else change.key)
        old = "—" if change.added else _param_value(change.old)
        new = "—" if change.removed else _param_value(change.new)
        lines.append(f"| {name} | {old} | {new} |")
    return ["\n".join(lines)]


def _folded(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def plots_section(report: Report, image_url: ImageUrl) -> list[str]:
    """Return each plot as an image with its text form folded beneath it."""
    parts = []
    for curve in report.curves:
        parts.append(f"#### {escape(curve.title)}")
        if curve.image:
            parts.append(f"![{escape(curve.title)}]({image_url(curve.image)})")
        chart, legend = mermaid(curve)
        parts.append(_folded(f"{escape(curve.title)} as a chart", f"{legend}\n\n{chart}"))
    for confusion in report.confusions:
        parts.append(f"#### {escape(confusion.title)}")
        if confusion.image:
            parts.append(f"![{escape(confusion.title)}]({image_url(confusion.image)})")
        note = "head; base in brackets where it differs" if confusion.base is not None else "head"
        table = confusion_table(confusion)
        parts.append(_folded(f"{escape(confusion.title)} as a table ({note})", table))
    for image in report.images:
        parts += [f"#### {escape(image.title)}", f"![{escape(image.title)}]({image_url(image.image)})"]
    if report.missing_plots:
        parts.append("Plots not drawn: " + "; ".join(escape(line) for line in report.missing_plots) + ".")
    return parts


def facts_section(report: Report) -> list[str]:
    """Return the run facts: commit, base, duration, device, stages, remote."""
    facts, stages = report.facts, report.stages
    ran = ", ".join(code(s) for s in stages.ran) or "none"
    cached = ", ".join(code(s) for s in stages.cached) or "none"
    lines = [
        f"commit `{short(facts.commit)}` · base {code(facts.base_ref)} (`{short(facts.base_commit)}`)",
        f"duration {duration(facts.duration_seconds)} · device {escape(facts.device)}",
        f"stages run: {ran} · unchanged or restored: {cached}",
        f"DVC remote {escape(facts.remote)}" if facts.remote else "no DVC remote configured",
    ]
    return ["**Run**: " + "<br>".join(lines)]


def failure_section(report: Report) -> list[str]:
    """Return the failed stage's last log lines."""
    if not report.failed:
        return []
    block = log_block(report.log_tail)
    return [f"Stage {code(report.stages.failed or '')} failed. The end of its log:\n\n{block}"]


def markdown(report: Report, image_url: ImageUrl) -> str:
    """Return the whole report as GitHub Markdown."""
    parts = [
        headline(report),
        *failure_section(report),
        *metrics_section(report),
        *params_section(report.params),
        *plots_section(report, image_url),
        *facts_section(report),
    ]
    return "\n\n".join(parts) + "\n"


def inline_image(folder: Path) -> ImageUrl:
    """Return an ImageUrl that embeds each PNG of `folder` as a data URI."""

    def url(name: str) -> str:
        return "data:image/png;base64," + base64.b64encode((folder / name).read_bytes()).decode()

    return url
