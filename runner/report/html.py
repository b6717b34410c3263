"""report.html: the Markdown rendered once more, images inlined, for viewing without GitHub."""

from pathlib import Path

from markdown_it import MarkdownIt

from runner.report.bundle import Report
from runner.report.render import inline_image, markdown

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


def html(report: Report, folder: Path) -> str:
    """Return a self-contained page of the report; the PNGs of `folder` become data URIs."""
    body = (
        MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown(report, lambda name: name))
    )
    embed = inline_image(folder)
    for name in report.image_names():  # after parsing: the parser is slow on megabyte-long links
        body = body.replace(f'src="{name}"', f'src="{embed(name)}"')
    title = f"orbit training report {report.facts.commit[:7]}"
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
