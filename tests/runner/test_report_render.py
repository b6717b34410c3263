"""The report's Markdown against golden files, and its HTML in a real headless Chromium."""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner.report.build import RunRecord, build_report, write_bundle
from runner.report.bundle import Facts, Report, Stages
from runner.report.render import markdown
from tests.report_project import repro, set_params, trained_base
from tests.runner.test_report_significance import EMOJI

GOLDEN = Path(__file__).parent.parent / "golden"
FACTS = Facts(
    commit="c0ffee" + "0" * 34,
    base_ref="main",
    base_commit="ba5e" + "1" * 36,
    duration_seconds=86.4,
    device="1 × NVIDIA L4",
    remote="storage (s3://orbit-dvc/celestial)",
)


def matches_golden(name: str, text: str) -> bool:
    path = GOLDEN / name
    if os.environ.get("ORBIT_UPDATE_GOLDEN"):
        path.write_text(text)
    return path.read_text() == text


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    """A report built by DVC from a params change, with the run's facts fixed for the golden file."""
    root = tmp_path_factory.mktemp("report")
    project = trained_base(root / "project")
    set_params(project, quality=0.9, lr=0.05)
    record = repro(project)
    report = build_report(project, "main", root / "bundle", RunRecord(record.log, 86.4))
    fixed = report.model_copy(update={"facts": FACTS})
    write_bundle(fixed, root / "bundle")
    return fixed, root / "bundle"


@pytest.mark.slow
def test_the_comment_markdown_matches_the_golden_file(bundle: tuple[Report, Path]) -> None:
    report, _ = bundle
    text = markdown(report, lambda name: f"https://github.com/octo-org/model/blob/assets/{name}?raw=true")
    assert matches_golden("report.md", text)


def test_a_failure_report_matches_the_golden_file() -> None:
    report = Report(
        facts=FACTS,
        stages=Stages(ran=["generate", "prepare"], cached=[], failed="train"),
        log_tail=[
            "Epoch 3/12",
            "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
            "```injected",
        ],
        base_has_metrics=True,
    )
    assert matches_golden("failure.md", markdown(report, lambda name: name))


def test_text_from_the_pipeline_cannot_inject_markup() -> None:
    hostile = Report.model_validate(
        {
            "facts": {**FACTS.model_dump(), "device": "<img src=x onerror=alert(1)> | **bold**"},
            "metrics": [{"path": "m.json", "key": "acc<!-- orbit:run -->", "head": 1.0, "verdict": "new"}],
        }
    )
    text = markdown(hostile, lambda name: name)
    assert re.search(r"<(img|!--)", text) is None, "every < arrives escaped"
    assert "&lt;img src=x onerror=alert(1)&gt; \\| \\*\\*bold\\*\\*" in text


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium package is needed (make test installs it)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def open_page(browser: object, html: Path, screenshot: Path) -> tuple[list[int], str]:
    """Open the page; return the natural width of every image and the page's text; save a screenshot."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    widths: list[int] = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
    text: str = page.evaluate("document.body.innerText")
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return widths, text


def plot_blue_pixels(screenshot: Path) -> int:
    """Count pixels of matplotlib's default blue: the curves and the confusion matrix's dark cells."""
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.int32)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    line = (abs(red - 31) < 25) & (abs(green - 119) < 25) & (abs(blue - 180) < 25)
    dark_cell = (red < 40) & (green < 80) & (blue > 100)
    return int((line | dark_cell).sum())


@pytest.mark.slow
def test_the_html_opens_in_chromium_with_every_image_loaded(
    bundle: tuple[Report, Path], browser: object, tmp_path: Path
) -> None:
    report, folder = bundle
    moved = tmp_path / "elsewhere" / "report.html"  # self-contained: works away from the PNGs
    moved.parent.mkdir()
    shutil.copyfile(folder / "report.html", moved)
    widths, text = open_page(browser, moved, tmp_path / "page.png")
    assert len(widths) == len(report.image_names()) == 3
    assert all(width > 0 for width in widths), widths
    assert plot_blue_pixels(tmp_path / "page.png") > 2000, "the plots are drawn on the page"
    assert "Verdict: better — val_acc +10 pts, 95 % CI +6 … +14.5, p < 0.001" in text
    assert EMOJI.search(text) is None, f"a headless browser's fonts may lack {EMOJI.findall(text)}"


@pytest.mark.slow
def test_the_screenshot_check_catches_a_broken_image(
    bundle: tuple[Report, Path], browser: object, tmp_path: Path
) -> None:
    _, folder = bundle
    page = (folder / "report.html").read_text()
    start = page.index('src="data:image/png;base64,') + len('src="')
    broken = page[:start] + "missing.png" + page[page.index('"', start) :]
    (tmp_path / "broken.html").write_text(broken)
    widths, _ = open_page(browser, tmp_path / "broken.html", tmp_path / "broken.png")
    assert widths[0] == 0 and all(width > 0 for width in widths[1:])


def test_values_in_code_spans_read_as_written() -> None:
    report = Report.model_validate(
        {
            "facts": {**FACTS.model_dump(), "base_ref": "release_2`x", "commit": "`; ls -l /"},
            "params": [{"path": "params.yaml", "key": "train.optimizer", "old": "adam_w", "new": "sgd <b>"}],
        }
    )
    text = markdown(report, lambda name: name)
    assert "| train.optimizer | `adam_w` | `sgd <b>` |" in text
    assert "``release_2`x``" in text, "a longer delimiter: the backtick shows as written"
    assert "`?`" in text.splitlines()[0], "a commit that is not hex is not shown"


def run_page(browser: object, html: Path) -> tuple[str, list[str], dict[str, int]]:
    """Open the page and return its title, the dialogs it opened and what the DOM holds of scripts."""
    from playwright.sync_api import Browser, Dialog

    assert isinstance(browser, Browser)
    page = browser.new_page()
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    page.wait_for_timeout(200)  # an image's onerror fires after load
    title = page.title()
    found: dict[str, int] = page.evaluate(
        """() => {
          const all = Array.from(document.querySelectorAll('*'));
          return {
            scripts: document.scripts.length,
            handlers: all.filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length,
            javascript: all.filter(e => ['href', 'src', 'action', 'formaction'].some(
              n => (e.getAttribute(n) || '').trim().toLowerCase().startsWith('javascript:'))).length,
            links: document.links.length,
          };
        }"""
    )
    page.close()
    return title, dialogs, found


HOSTILE_TEXT = (
    "<img src=x onerror=\"document.title='pwned';alert(1)\" x=>"
    "<script>document.title='pwned';alert(2)</script>"
    "<svg onload=alert(3)></svg>[x](javascript:alert(4))"
    "x\r```\r\r<img src=x onerror=\"document.title='pwned';alert(5)\" x=>"
    "</summary></details><details open><summary><a href=javascript:alert(6)>y</a>"
)


def test_a_hostile_report_html_runs_no_script_in_chromium(browser: object, tmp_path: Path) -> None:
    """Every text of report.json holds script payloads (tags, handlers, javascript: links, a fence
    closed by \\r, a forged <summary>): the page must open with its own title, no dialog and no
    script, handler or javascript: URL in its DOM."""
    from tests.report_fixtures import png
    from tests.runner.test_inert_report import hostile_report

    report = hostile_report(HOSTILE_TEXT)
    for name in report.image_names():
        (tmp_path / name).write_bytes(png())
    write_bundle(report, tmp_path)
    title, dialogs, found = run_page(browser, tmp_path / "report.html")
    assert title == "orbit training report c0ffeea"
    assert dialogs == []
    assert found == {"scripts": 0, "handlers": 0, "javascript": 0, "links": 0}


def test_the_pages_policy_stops_a_script_that_got_in(browser: object, tmp_path: Path) -> None:
    """Should a script ever reach report.html, its Content-Security-Policy still keeps it from running."""
    from tests.report_fixtures import png, report

    plain = report()
    for name in plain.image_names():
        (tmp_path / name).write_bytes(png())
    write_bundle(plain, tmp_path)
    page = (tmp_path / "report.html").read_text()
    injected = "<script>document.title='pwned';alert(1)</script><img src=x onerror=\"alert(2)\">"
    (tmp_path / "injected.html").write_text(page.replace("</body>", injected + "</body>"))
    title, dialogs, _ = run_page(browser, tmp_path / "injected.html")
    assert title == "orbit training report c0ffeea" and dialogs == []
