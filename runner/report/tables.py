"""Markdown tables of a bounded number of rows, with a line saying how many were left out."""

from collections.abc import Iterable

MAX_ROWS = 200  # rows shown of one table
LEFT_OUT = "left out to fit GitHub's limit; the run's `orbit-report` artifact has them all"


def plural(count: int, word: str, many: str | None = None) -> str:
    """Return `1 row`, `3 rows` (or the plural given)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def table(header: list[str], rows: Iterable[str], total: int, max_rows: int) -> str:
    """Return a Markdown table of the first `max_rows` rows, and a line saying how many were left out."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += (row for _, row in zip(range(max_rows), rows, strict=False))
    text = "\n".join(lines)
    left = total - min(total, max_rows)
    if left:
        text += f"\n\n… {plural(left, 'more row')} {LEFT_OUT}."
    return text
