"""The one report comment per pull request: found by a hidden marker, rebuilt with the newest run on top.

Each run's section sits between markers that carry its run id, so a redelivered run replaces its own
section and older runs stay, folded. GitHub refuses comments over 65,536 characters; the oldest runs
are dropped first, then the newest is cut, never the whole update.
"""

import re
from dataclasses import dataclass

from runner.report import inert

MARKER = "<!-- orbit:training-report -->"
LIMIT = 65_536
TITLE = "## orbit training report"
SECTION = re.compile(r"<!-- orbit:run (?P<run>\d+) -->\n(?P<body>.*?)\n<!-- orbit:end (?P=run) -->", re.S)
DROPPED = re.compile(r"<!-- orbit:dropped (?P<count>\d+) -->")
TRIMMED = (
    "\n\n… cut to fit GitHub's comment limit; the whole report is in the run's `orbit-report` artifact.\n"
)


@dataclass(frozen=True)
class Section:
    """One run's part of the comment."""

    run_id: int
    body: str

    def summary(self) -> str:
        """Return the section's first line as plain, inert HTML text, for a folded `<summary>`.

        A `<summary>` shows Markdown as typed: heading marks, backticks and backslash escapes go,
        and what was inside a code span (a branch name from report.json) becomes text, so it is
        escaped for HTML and its mentions and references neutralised.
        """
        first = self.body.strip().split("\n")[0] if self.body.strip() else f"run {self.run_id}"
        plain = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", first.lstrip("#").replace("`", "")).strip()
        return inert.references(plain.replace("<", "&lt;").replace(">", "&gt;"))

    def marked(self) -> str:
        """Return the body between its markers."""
        return f"<!-- orbit:run {self.run_id} -->\n{self.body}\n<!-- orbit:end {self.run_id} -->"


def neutralise(markdown: str) -> str:
    """Break any HTML comment in text from a job, so that it cannot forge a section marker.

    Only `<!--` is broken: no marker can start without it, and a `-->` (a Mermaid chart's axis)
    stays intact.
    """
    return inert.break_comments(markdown)


def sections(body: str) -> list[Section]:
    """Return the run sections of an existing report comment, newest first."""
    return [Section(int(match["run"]), match["body"]) for match in SECTION.finditer(body)]


def _render(latest: Section, older: list[Section], dropped: int) -> str:
    parts = [MARKER, TITLE, latest.marked()]
    if older or dropped:
        parts.append(f"### Earlier runs ({len(older) + dropped})")
    for section in older:
        parts.append(f"<details><summary>{section.summary()}</summary>\n\n{section.marked()}\n\n</details>")
    if dropped:
        parts.append(
            f"<!-- orbit:dropped {dropped} -->"
            f"{dropped} older run{'s were' if dropped > 1 else ' was'} left out to fit GitHub's limit."
        )
    return "\n\n".join(parts) + "\n"


def _cut(section: Section, room: int) -> Section:
    """Cut a section's body at a line so that it fits `room` characters.

    An open code block (whatever its fence) and any `<details>` the cut left open are closed.
    """
    return Section(section.run_id, inert.cut(section.body, max(0, room), TRIMMED))


def compose(existing: str | None, run_id: int, markdown: str) -> str:
    """Return the comment with this run's report on top and the earlier runs folded beneath."""
    latest = Section(run_id, neutralise(markdown).strip())
    older = [s for s in sections(existing or "") if s.run_id != run_id]
    earlier_drop = DROPPED.search(existing or "")
    dropped = int(earlier_drop["count"]) if earlier_drop else 0
    body = _render(latest, older, dropped)
    while len(body) > LIMIT and older:
        older.pop()
        dropped += 1
        body = _render(latest, older, dropped)
    if len(body) > LIMIT:
        latest = _cut(latest, LIMIT - (len(body) - len(latest.body)))
        body = _render(latest, older, dropped)
    return body
