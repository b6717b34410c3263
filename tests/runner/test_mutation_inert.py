"""Each inert context on its own, at its edges: cuts at their limits, quotes in raw HTML, code spans
that start or end with a backtick, fences longer than any run inside, line endings, and `cut`,
which must fit its room and close whatever code block or `<details>` it leaves open.

Written to kill the mutants scripts/mutation found alive.
"""

import pytest

from runner.report.inert import (
    ELLIPSIS,
    MAX_TEXT,
    code,
    cut,
    fence,
    html_text,
    lines,
    mermaid_text,
    open_details,
    open_fence,
    safe_name,
    size,
    text,
)


def test_inline_text_of_exactly_the_limit_is_whole_and_one_more_is_cut() -> None:
    assert text("x" * MAX_TEXT) == "x" * MAX_TEXT
    assert text("x" * (MAX_TEXT + 1)) == "x" * (MAX_TEXT - 1) + ELLIPSIS


@pytest.mark.parametrize("limit", range(1, 12))
def test_cut_inline_text_is_never_longer_than_its_limit(limit: int) -> None:
    cut_text = text("abcdefghijklmnop", limit=limit)
    assert cut_text == "abcdefghijklmnop"[: limit - 1] + ELLIPSIS
    assert len(cut_text) == limit


def test_a_cut_drops_the_space_before_the_ellipsis() -> None:
    assert text("a" * 8 + " " + "b" * 5, limit=10) == "a" * 8 + ELLIPSIS


def test_html_text_escapes_both_quotes_and_is_cut() -> None:
    assert html_text("\"'<&>") == "&quot;&#x27;&lt;&amp;&gt;"
    assert html_text("y" * 200) == "y" * (MAX_TEXT - 1) + ELLIPSIS


def test_a_code_span_outside_a_table_keeps_its_pipes_and_an_empty_one_is_a_dash() -> None:
    assert code("a|b") == "`a|b`"
    assert code("") == "—"


def test_a_code_span_in_a_cell_doubles_the_backslashes_before_a_pipe() -> None:
    assert code("a\\|b", cell=True) == "`a\\\\\\|b`"
    assert code("a|b", cell=True) == "`a\\|b`"


@pytest.mark.parametrize(
    ("value", "span"),
    [("`a", "`` `a ``"), ("a`", "`` a` ``"), ("`a`", "`` `a` ``"), ("a`b", "``a`b``")],
)
def test_a_code_span_that_starts_or_ends_with_a_backtick_is_padded(value: str, span: str) -> None:
    assert code(value) == span


def test_lines_split_at_every_line_ending() -> None:
    assert lines("a\r\nb\rc\nd") == ["a", "b", "c", "d"]
    assert lines("a\r\n\r\nb") == ["a", "", "b"]


def test_a_fence_is_text_by_default_and_takes_a_string_whole() -> None:
    assert fence("abc") == "```text\nabc\n```"
    assert fence(["a", "b"], info="py") == "```py\na\nb\n```"


def test_a_fence_is_one_backtick_longer_than_the_longest_run_inside() -> None:
    assert fence("a ```` b") == "`````text\na ```` b\n`````"
    assert fence("a `` b") == "```text\na `` b\n```"


def test_a_fenced_line_of_exactly_the_limit_is_whole_and_a_longer_one_is_cut() -> None:
    assert fence("x" * 5, line_limit=5) == "```text\nxxxxx\n```"
    assert fence("x" * 6, line_limit=5) == "```text\nxxxx…\n```"


def test_a_tab_in_a_fence_is_four_spaces() -> None:
    assert fence("a\tb") == "```text\na    b\n```"


def test_mermaid_text_has_no_hash_and_is_cut() -> None:
    assert mermaid_text("#1 #2") == "＃1 ＃2"
    assert mermaid_text("z" * 200) == "z" * (MAX_TEXT - 1) + ELLIPSIS


def test_a_name_with_two_dots_in_a_row_is_not_safe() -> None:
    assert safe_name("a..b") is None
    assert safe_name("a.b") == "a.b"


@pytest.mark.parametrize(
    ("markdown", "fence_left_open"),
    [
        ("a ```", None),  # a fence opens only at the start of a line
        ("```\ncode", "```"),
        ("```\ncode\n```", None),
        ("````\ncode\n```", "````"),  # a shorter fence does not close a longer one
        ("```\ncode\n````", None),  # a longer one does
        ("```\ncode\n~~~", "```"),  # nor does a fence of the other character
        ("```\ncode\n``` x", "```"),  # nor one with anything after it
        ("~~~\ncode\n~~~", None),
    ],
)
def test_the_fence_left_open_is_found(markdown: str, fence_left_open: str | None) -> None:
    assert open_fence(markdown) == fence_left_open


@pytest.mark.parametrize(
    ("markdown", "depth"),
    [
        ("<details>", 1),
        ("<details></details>", 0),
        ("<details>\n</details>", 0),
        ("</details>", 0),
        ("</details>\n<details>", 1),
        ("<details><details></details>", 1),
        ("<details>\n```\n</details>\n```\n", 1),  # a tag inside a code block is text
        ("```\ncode\n```\n<details>", 1),  # and outside one again a tag
    ],
)
def test_the_details_left_open_are_counted(markdown: str, depth: int) -> None:
    assert open_details(markdown) == depth


def test_markdown_that_fits_its_room_exactly_is_not_cut() -> None:
    assert cut("abc", 3, "N") == "abc"
    assert cut("abcd", 3, "N") == "N"


def test_a_cut_keeps_whole_lines_up_to_64_bytes_before_the_note() -> None:
    """205 bytes of room, a 5-byte note: 135 bytes are looked at, and the 27th line ends at the 135th."""
    assert cut("abcd\n" * 100, 204, "NOTE!") == "abcd\n" * 26 + "abcd" + "NOTE!"


def test_a_single_line_too_long_to_fit_leaves_only_the_note() -> None:
    assert cut("x" * 300, 100, "N") == "N"


def test_a_cut_through_a_character_drops_its_bytes() -> None:
    assert cut("ab\n" + "é" * 100 + "\n", 75, "N") == "abN"  # the 10th byte is half an é


def test_a_cut_inside_a_code_block_closes_it_before_the_note() -> None:
    assert cut("```\n" + "code\n" * 100, 100, "N") == "```" + "\ncode" * 6 + "\n```" + "N"


def test_a_cut_drops_lines_until_what_it_closes_fits_exactly() -> None:
    """Each line opens two `<details>`: 19 bytes, and 24 to close them. Five lines and their closing
    fill the room exactly; the first cut, 64 bytes short of the room, took seven."""
    note = "\n\n_(the rest is cut)_\n"
    assert size(note) >= 22  # large enough that a note counted the wrong way would fit a sixth line
    line = "<details><details>"
    room = 5 * len(line) + 4 + 10 * len("\n\n</details>") + size(note)
    result = cut((line + "\n") * 20, room, note)
    assert result == "\n".join([line] * 5) + "\n\n</details>" * 10 + note
    assert size(result) == room


def test_a_last_line_that_cannot_fit_with_its_closing_leaves_only_the_note() -> None:
    eight = "<details>" * 8  # 72 bytes, and 96 to close
    assert cut(eight + "\ny\n" + "x" * 500, 160, "N") == "N"


def test_a_cut_drops_whole_lines_never_part_of_one() -> None:
    """Seven lines of one `<details>` each do not fit with their closing; six do, and so would part of
    the seventh: the cut keeps lines whole."""
    line = "<details>" + "x" * 50
    result = cut((line + "\n") * 20, 491, "N")
    assert result == "\n".join([line] * 6) + "\n\n</details>" * 6 + "N"
