"""Make untrusted text inert wherever orbit writes it: a PR comment, a check run, report.html.

Everything a report shows comes from a job that ran a pull request's code (report.json: metric and
param names and values, stage names, plot titles, file names, log lines), or from a run's log. Each
function here is one context, and the only way such text reaches what orbit writes:

- `text`: Markdown inline text (a paragraph, a heading, a table cell, link text, image alt text);
- `html_text`: text inside raw HTML (a `<summary>`, report.html's own elements);
- `code`: a code span, shown as written (in a table cell too);
- `fence`: a fenced code block (log lines, a Mermaid chart) that no content can close early;
- `mermaid_text`: a quoted string inside a Mermaid chart;
- `safe_name`: a file name that may go into a link, or None.

In every context: control characters, terminal colour codes and bidirectional overrides are
dropped; HTML cannot open (`<`, `>` and `&` arrive as entities, or inside code); an `@mention`
(a team's too) pings nobody and `#123`, `GH-123`, `owner/repo#1` link to nothing, through a
zero-width joiner after `@`, `#` or `GH-`; `<!--` is broken, so no text can forge the sticky
comment's markers. Inline text is one line, cut to a length.
"""

import html
import re

ZWJ = "\u200d"  # zero-width joiner: invisible, and no GitHub reference reads through it
ZWSP = "\u200b"
ELLIPSIS = "…"
MAX_TEXT = 120  # characters of one name or value shown inline
MAX_FENCE_LINE = 400  # characters of one line of a code block

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")
_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MENTION = re.compile(rf"@(?!{ZWJ})")
_ISSUE = re.compile(r"(?i)(#|\bGH-)(?=\d)")
_COMMENT_OPEN = "<!--"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_MARKDOWN = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        **{char: f"\\{char}" for char in "\\`*_[]|#!~$"},
    }
)
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_DETAILS = re.compile(r"<(/?)details>")


def _one_line(value: object, limit: int | None) -> str:
    """Return the value as one line: invisible characters dropped, whitespace collapsed, cut."""
    text = " ".join(_ANSI.sub("", str(value)).split())  # \r, \n, \t, U+2028 and the like
    text = " ".join(_INVISIBLE.sub("", text).split())
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)].rstrip() + ELLIPSIS
    return text


def references(text: str) -> str:
    """Return text in which no `@mention`, `#123`, `GH-123` or `owner/repo#1` links or notifies."""
    return _ISSUE.sub(lambda m: m.group(1) + ZWJ, _MENTION.sub("@" + ZWJ, text))


def break_comments(text: str) -> str:
    """Break every HTML comment opener, so that no text can forge a marker or hide what follows.

    A `-->` alone opens nothing (and Mermaid's axes need it), so it is left as it is.
    """
    return text.replace(_COMMENT_OPEN, f"<{ZWSP}!--")


def text(value: object, limit: int | None = MAX_TEXT) -> str:
    """Return untrusted text as inert Markdown inline text, one line: it reads as written, nothing more.

    Markdown's punctuation is backslash-escaped (a table cell's `|` included), HTML's as entities.
    """
    return references(_one_line(value, limit).translate(_MARKDOWN))


def html_text(value: object, limit: int | None = MAX_TEXT) -> str:
    """Return untrusted text for inside raw HTML (where Markdown is not read): entities only."""
    return references(html.escape(_one_line(value, limit), quote=True))


def code(value: object, *, cell: bool = False, limit: int | None = MAX_TEXT) -> str:
    """Return text as a code span, shown as written; `cell` for one inside a Markdown table.

    The delimiter is one backtick longer than the longest run in the text. In a table a `|` is
    escaped, and the backslashes before it doubled, so that no renderer splits the cell there.
    """
    content = break_comments(_one_line(value, limit))
    if not content:
        return "—"
    if cell:
        content = re.sub(r"(\\*)\|", lambda m: m.group(1) * 2 + "\\|", content)
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", content)), default=0) + 1)
    pad = " " if content[0] == "`" or content[-1] == "`" else ""
    return f"{ticks}{pad}{content}{pad}{ticks}"


def lines(value: object) -> list[str]:
    r"""Return text split into lines at any CommonMark line ending (`\r\n`, `\r`, `\n`)."""
    return str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _block_line(line: str, limit: int) -> str:
    line = _INVISIBLE.sub("", _ANSI.sub("", line.replace("\t", "    ")))
    return line[: limit - 1] + ELLIPSIS if len(line) > limit else line


def fence(content: str | list[str], info: str = "text", line_limit: int = MAX_FENCE_LINE) -> str:
    r"""Return content as a fenced code block that no line of it can close.

    Line endings are normalised (a `\r` would otherwise end a line GitHub sees), each line is cut
    to `line_limit` characters, and the fence is one backtick longer than any run in the content.
    """
    raw = "\n".join(content) if isinstance(content, list) else content
    body = "\n".join(_block_line(line, line_limit) for line in lines(raw))
    body = break_comments(body)
    ticks = "`" * max(3, max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    return f"{ticks}{info}\n{body}\n{ticks}"


def mermaid_text(value: object, limit: int | None = MAX_TEXT) -> str:
    """Return text for a quoted Mermaid string: no quote, directive, entity code, tag or backtick."""
    text = _one_line(value, limit)
    for old, new in (('"', "'"), ("`", "'"), ("%%", "%"), ("#", "＃"), ("<", "‹"), (">", "›")):
        text = text.replace(old, new)
    return text.replace("{", "(").replace("}", ")")


def safe_name(name: object) -> str | None:
    """Return the name if it is a plain file name (`[A-Za-z0-9._-]`, no `..`, no leading dot), else None."""
    if isinstance(name, str) and _SAFE_NAME.fullmatch(name) and ".." not in name:
        return name
    return None


def _scan(markdown: str) -> tuple[str | None, int]:
    """Return the fence of a code block left open at the end, and how many `<details>` are open."""
    opened: str | None = None
    depth = 0
    for line in markdown.split("\n"):
        match = _FENCE_OPEN.match(line)
        if opened is None:
            if match:
                opened = match.group(1)
                continue
            for tag in _DETAILS.finditer(line):
                depth = max(0, depth - 1) if tag.group(1) else depth + 1
        elif (
            match
            and match.group(1)[0] == opened[0]
            and len(match.group(1)) >= len(opened)
            and not line.strip().strip(opened[0])
        ):
            opened = None
    return opened, depth


def open_fence(markdown: str) -> str | None:
    """Return the fence of a code block left open at the end of `markdown`, or None."""
    return _scan(markdown)[0]


def open_details(markdown: str) -> int:
    """Return how many of orbit's own `<details>` are left open at the end of `markdown`.

    Untrusted text cannot write `<details>` (it arrives as `&lt;details&gt;` or inside code), so
    counting the tags outside code blocks counts orbit's own.
    """
    return _scan(markdown)[1]


def cut(markdown: str, room: int, note: str) -> str:
    """Return `markdown` cut at a line to fit `room` UTF-8 bytes with `note` after it.

    A code block or `<details>` left open by the cut is closed first, so the note and whatever
    follows are not swallowed by it.
    """
    if size(markdown) <= room:
        return markdown
    budget = max(0, room - size(note) - 64)
    head = markdown.encode()[:budget].decode(errors="ignore")
    head = head[: head.rfind("\n")] if "\n" in head else ""
    while True:
        fenced, details = _scan(head)
        closing = (f"\n{fenced}" if fenced else "") + "\n\n</details>" * details
        if size(head) + size(closing) + size(note) <= room or not head:
            return head + closing + note
        head = head[: head.rfind("\n")] if "\n" in head else ""


def size(text: str) -> int:
    """Return the size of text in UTF-8 bytes: never less than its length in characters or UTF-16 units."""
    return len(text.encode())
