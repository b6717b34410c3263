"""report.html: the Markdown rendered once more, images inlined, for viewing without GitHub.

The page runs no script: its text is the report's inert Markdown (untrusted text arrives escaped,
only orbit's own `<details>`, `<summary>` and `<br>` are HTML), and a Content-Security-Policy
forbids scripts, plug-ins, frames, forms and any fetch; images are data URIs, styles the page's own.
"""

import base64
import hashlib
import html as entities
from pathlib import Path

from markdown_it import MarkdownIt

from runner.report.bundle import Report
from runner.report.inert import safe_name
from runner.report.render import inline_image, markdown, short

STYLE = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 980px;
       margin: 2em auto; padding: 0 1em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
pre { background: #f6f8fa; padding: 0.8em; overflow: auto; }
details { margin: 0.5em 0; }
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
POLICY = (
    "default-src 'none'; script-src 'none'; object-src 'none'; frame-src 'none'; "
    f"img-src data:; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; form-action 'none'"
)


def html(report: Report, folder: Path) -> str:
    """Return a self-contained page of the report; the images of `folder` become data URIs."""
    names = [name for name in report.image_names() if safe_name(name)]
    body = (
        MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown(report, safe_name_or_blank))
    )
    embed = inline_image(folder)
    for name in dict.fromkeys(names):  # after parsing: the parser is slow on megabyte-long links
        body = body.replace(f'src="{name}"', f'src="{embed(name)}"')
    title = entities.escape(f"orbit training report {short(report.facts.commit)}")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f'<meta name="referrer" content="no-referrer"><title>{title}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )


def safe_name_or_blank(name: str) -> str:
    """Link an image by its plain file name (replaced by a data URI once the page is rendered)."""
    return safe_name(name) or ""
