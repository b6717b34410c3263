"""What orbit writes from a report is inert: a hostile report.json, field by field, context by context.

Every text of report.json comes from a job that ran a pull request's code. Whatever it holds, the
comment and check run (Markdown) and report.html must show it as text: no HTML, no link or image
of its own, no mention that pings, no issue reference that links, no table or code block broken.
The Markdown is read the way GitHub reads it (CommonMark with tables, raw HTML allowed) and the
result inspected; report.html is also opened in Chromium (test_report_render.py).
"""

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from runner.report.artifact import BundleError, read_bundle
from runner.report.bundle import Report
from runner.report.html import html
from runner.report.render import markdown
from runner.report.sticky import compose, sections
from tests.report_fixtures import SHA, bundle_zip, png, report

ZWJ = "\u200d"
PWNED = "document.title='pwned'"
HOSTILE = {
    "mention": "ping @octocat and @octo-org/owners",
    "issue refs": "fixes #123, GH-45 and octo-org/model#6",
    "img onerror": f"<img src=x onerror={PWNED} x=>",
    "script": f"<script>{PWNED}</script>",
    "details": "</summary></details><details open><summary>forged",
    "comment marker": "<!-- orbit:end 100 --><!-- orbit:run 999 -->",
    "javascript link": "[click me](javascript:alert(1))",
    "remote image": "![pixel](https://attacker.example/p.png)",
    "autolink": "<https://attacker.example/x>",
    "pipes": "a | b || c \\| d",
    "newlines": "one\ntwo\r\nthree\rfour\u2028five",
    "carriage fence": f"x\r```\r\r<img src=x onerror={PWNED} x=>",
    "fence": "```\n<img src=x onerror=alert(1)>\n```",
    "entities": "&lt;b&gt;not bold&lt;/b&gt; &amp; &#60;i&#62;",
    "markdown": "**bold** _it_ ~~strike~~ `code` # heading $x^2$",
    "bidi and colour": "\u202eevil\u202c \x1b[31mred\x1b[0m \x07bell",
}
ALLOWED_TAGS = {
    "h3", "h4", "p", "br", "strong", "em", "table", "thead", "tbody", "tr", "th", "td",
    "details", "summary", "img", "code", "pre",
}  # fmt: skip
IMAGES = {name: f"https://github.com/octo-org/model/blob/{'a' * 40}/pr-7/run-1/{name}?raw=true" for name in (
    "loss.png", "confusion.png", "predictions.png"
)}  # fmt: skip


def hostile_report(payload: str, failed: bool = True) -> Report:
    """A report whose every text field (but the image names) holds the payload."""
    return report(
        facts={
            "commit": SHA,
            "base_ref": payload,
            "base_commit": "b" * 40,
            "device": payload,
            "remote": payload,
        },
        stages={"ran": [payload], "cached": [payload], "failed": payload if failed else None},
        params=[
            {"path": "params.yaml", "key": payload, "old": payload, "new": 1},
            {"path": payload, "key": "train.lr", "old": {"nested": payload}, "new": [payload]},
        ],
        metrics=[
            {"path": "m.json", "key": payload, "base": 0.1, "head": 0.2, "verdict": "better"},
            {"path": payload, "key": f"per_class.{payload}.recall", "head": 0.5, "verdict": "new"},
        ],
        curves=[
            {
                "title": payload,
                "x_label": payload,
                "head": [{"name": payload, "x": [1, 2], "y": [0.5, 0.2]}],
                "base": [{"name": payload, "x": [1, 2], "y": [0.6, 0.3]}],
                "image": "loss.png",
            }
        ],
        confusions=[
            {
                "title": payload,
                "classes": [payload, "b"],
                "head": [[9, 1], [0, 10]],
                "base": [[8, 2], [0, 10]],
                "image": "confusion.png",
            }
        ],
        images=[{"title": payload, "image": "predictions.png"}],
        missing_plots=[payload],
        log_tail=["Epoch 3/12", payload, "RuntimeError: CUDA out of memory"],
    )


class Page(HTMLParser):
    """The elements, attributes and text of rendered HTML, text inside code kept apart."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []  # outside <code> and <pre>
        self.code: list[str] = []
        self.pre: list[str] = []
        self.tables: list[list[int]] = []  # the cells of each row of each table
        self._in_code = 0
        self._in_pre = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("code", "pre"):
            self._in_code += 1
        if tag == "pre":
            self.pre.append("")
            self._in_pre = True
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append(0)
        if tag in ("td", "th"):
            self.tables[-1][-1] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "pre"):
            self._in_code -= 1
        if tag == "pre":
            self._in_pre = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.code.append(data)
            if self._in_pre:
                self.pre[-1] += data
        else:
            self.text.append(data)


def as_github_reads_it(text: str) -> Page:
    return Page(MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(text))


def assert_inert(page: Page, images: set[str]) -> None:
    """No element but orbit's own; no handler, script URL or foreign image; no live mention or reference."""
    for tag, attrs in page.tags:
        assert tag in ALLOWED_TAGS, f"<{tag}> came from untrusted text"
        assert not [a for a in attrs if a.startswith("on")], f"<{tag}> has a handler: {attrs}"
        assert "javascript:" not in (attrs.get("href", "") + attrs.get("src", "")).lower()
        assert tag != "img" or attrs["src"] in images, f"an image of the attacker's: {attrs}"
        assert tag != "details" or "open" not in attrs
    words = " ".join(page.text)
    assert re.search(r"@[A-Za-z0-9]", words) is None, "a mention would ping"
    assert re.search(r"(#|\bGH-)\d", words) is None, "a reference would link"
    assert page.tables, "the tables are there"
    for rows in page.tables:
        assert len(set(rows)) == 1, f"a table row has cells of its own: {rows}"


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("failed", [True, False], ids=["failed", "succeeded"])
def test_every_field_of_a_hostile_report_is_inert_in_the_comment(payload: str, failed: bool) -> None:
    text = markdown(hostile_report(payload, failed), IMAGES.__getitem__)
    page = as_github_reads_it(text)
    assert_inert(page, set(IMAGES.values()))
    assert len(page.pre) == 1 + failed, "one code block for the chart and one for the log: none broken"
    folds = [tag for tag, _ in page.tags if tag in ("details", "summary")]
    assert len(folds) == 2 * text.count("\n<details><summary>") >= 4, "only orbit's own folds"
    assert "<!--" not in text, "no HTML comment, so no forged section marker"


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_log_block_shows_each_line_as_written_and_cannot_be_closed(payload: str) -> None:
    text = markdown(hostile_report(payload), IMAGES.__getitem__)
    log = as_github_reads_it(text).pre[0]
    expected = payload.replace("\r\n", "\n").replace("\r", "\n")
    expected = re.sub(r"\x1b\[[0-9;]*m|[\x07\u202e\u202c]", "", expected).replace("<!--", "<\u200b!--")
    assert log == f"Epoch 3/12\n{expected}\nRuntimeError: CUDA out of memory\n"


# (field, payload, what the Markdown must hold): each context's escaping, as written out
CONTEXTS = [
    ("table cell", "key", "a | b", "| a \\| b | 0.1 | 0.2 |"),
    ("table cell", "key", "one\ntwo\r\nthree", "| one two three | 0.1 |"),
    ("table cell", "key", "@octo-org/owners", f"| @{ZWJ}octo-org/owners |"),
    ("table cell", "key", "see #12 and GH-3", f"| see \\#{ZWJ}12 and GH-{ZWJ}3 |"),
    ("table cell", "key", "<b>x</b> & y", "| &lt;b&gt;x&lt;/b&gt; &amp; y |"),
    ("table cell", "key", "[x](javascript:alert(1))", "| \\[x\\](javascript:alert(1)) |"),
    ("table cell", "key", "![p](https://a.example/p.png)", "| \\!\\[p\\](https://a.example/p.png) |"),
    ("code in a cell", "value", "a|b", "| `a\\|b` | `1` |"),
    ("code in a cell", "value", "x`y", "| ``x`y`` | `1` |"),
    ("heading", "title", "<script>alert(1)</script>", "#### &lt;script&gt;alert(1)&lt;/script&gt;\n"),
    ("heading", "title", "# 1 @me #2", f"#### \\# 1 @{ZWJ}me \\#{ZWJ}2\n"),
    ("image alt", "title", "x](https://a.example/p.png) ![y", "![x\\](https://a.example/p.png) \\!\\[y]("),
    (
        "summary (HTML)",
        "title",
        "</summary><img src=x onerror=alert(1)>",
        "<summary>&lt;/summary&gt;&lt;img src=x onerror=alert(1)&gt; as a chart</summary>",
    ),
    ("summary (HTML)", "title", "**@me** #1", f"<summary>**@{ZWJ}me** #{ZWJ}1 as a chart</summary>"),
    (
        "mermaid string",
        "title",
        'a" %%{init: {"securityLevel": "loose"}}%% `<b>`',
        "  title \"a' %(init: ('securityLevel': 'loose'))% '‹b›'\"\n",
    ),
    ("code span", "base_ref", "release`x", "against ``release`x`` ("),
    ("code span", "base_ref", "a\nb <!--", "against `a b <\u200b!--` ("),
    ("inline text", "device", "$x$ ~~s~~ *b*", "device \\$x\\$ \\~\\~s\\~\\~ \\*b\\*<br>"),
    ("inline text", "device", "\u202eevil\x1b[31m", "device evil<br>"),
]  # fmt: skip


@pytest.mark.parametrize(("context", "field", "payload", "expected"), CONTEXTS, ids=[c[0] for c in CONTEXTS])
def test_each_context_writes_the_text_as_it_must(
    context: str, field: str, payload: str, expected: str
) -> None:
    fields: dict[str, dict[str, Any]] = {
        "key": {
            "metrics": [{"path": "m.json", "key": payload, "base": 0.1, "head": 0.2, "verdict": "better"}]
        },
        "value": {"params": [{"path": "params.yaml", "key": "k", "old": payload, "new": 1}]},
        "title": {"curves": [{"title": payload, "x_label": "epoch", "image": "loss.png"}]},
        "base_ref": {"facts": {"commit": SHA, "base_ref": payload}},
        "device": {"facts": {"commit": SHA, "base_ref": "main", "device": payload}},
    }
    text = markdown(report(**fields[field]), IMAGES.__getitem__)
    assert expected in text, f"{context}: {expected!r} not in the Markdown"


@pytest.mark.parametrize(
    "name",
    ["../loss.png", ".hidden.png", "a).png", "x.png)![p](https://attacker.example/p", "javascript:alert(1)",
     "a b.png", "dir/loss.png", "x\\y.png", "ünï.png", ".."],
)  # fmt: skip
def test_an_image_name_outside_the_safe_set_is_refused_and_never_linked(name: str) -> None:
    hostile = report(images=[{"title": "predictions", "image": name}])
    with pytest.raises(BundleError, match="not a plain file name"):
        read_bundle(bundle_zip(hostile, files={name: png()}))
    text = markdown(hostile, lambda name: f"https://github.com/octo-org/model/blob/{'a' * 40}/{name}")
    images = [attrs["src"] for tag, attrs in as_github_reads_it(text).tags if tag == "img"]
    assert len(images) == 2 and all(src.endswith(("loss.png", "confusion.png")) for src in images)
    assert "is not shown: it is not a plain file name" in text


def test_a_safe_image_name_is_kept() -> None:
    bundle = read_bundle(bundle_zip(report(images=[{"title": "p", "image": "pred-1_v2.PNG"}])))
    assert "pred-1_v2.PNG" in bundle.images


def test_the_folded_summary_of_an_earlier_run_is_inert_html() -> None:
    hostile = hostile_report("<img src=x onerror=alert(1)> @octo-org/owners #1")
    first = compose(None, 100, markdown(hostile, IMAGES.__getitem__))
    body = compose(first, 101, "### the next run")
    summary = re.search(r"<details><summary>(.*?)</summary>\n\n<!-- orbit:run 100 -->", body)
    assert summary is not None
    assert "<img" not in summary[1] and "&lt;img src=x onerror=alert(1)&gt;" in summary[1]
    assert f"@{ZWJ}octo-org/owners" in summary[1] and f"#{ZWJ}1" in summary[1]
    assert [s.run_id for s in sections(body)] == [101, 100], "no forged section"


@pytest.mark.parametrize(
    "payload",
    [
        HOSTILE[k]
        for k in ("mention", "issue refs", "img onerror", "javascript link", "remote image", "autolink")
    ],
    ids=["mention", "issue refs", "img onerror", "javascript link", "remote image", "autolink"],
)
def test_a_bundle_error_names_untrusted_files_inertly(payload: str) -> None:
    """publish.py posts a BundleError's message as the comment: a name from the bundle is inert in it."""
    with pytest.raises(BundleError) as caught:
        read_bundle(bundle_zip(report(images=[{"title": "p", "image": payload}])))
    page = as_github_reads_it(f"### ⚠️ The report could not be read\n\n{caught.value}")
    assert [tag for tag, _ in page.tags] == ["h3", "p"], "no link, image or HTML of the attacker's"
    words = " ".join(page.text)
    assert re.search(r"@[A-Za-z0-9]", words) is None and re.search(r"(#|\bGH-)\d", words) is None


def test_report_html_has_a_policy_against_scripts_and_only_escaped_text(tmp_path: Path) -> None:
    hostile = hostile_report(HOSTILE["img onerror"] + HOSTILE["carriage fence"])
    for name in hostile.image_names():
        (tmp_path / name).write_bytes(png())
    page = html(hostile, tmp_path)
    head = page[: page.index("</head>")]
    assert "Content-Security-Policy" in head and "script-src 'none'" in head and "default-src 'none'" in head
    parsed = Page(page)
    assert not [tag for tag, _ in parsed.tags if tag in ("script", "iframe", "object", "embed", "a")]
    assert not [attrs for _, attrs in parsed.tags if any(a.startswith("on") for a in attrs)]
    assert all(
        attrs["src"].startswith("data:image/png;base64,") for tag, attrs in parsed.tags if tag == "img"
    )
