"""Fixed-width text tables, the one printer behind every table the CLI and the reports print."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["text_table"]


def text_table(rows: Sequence[Sequence[object]], header: list[str], numeric: bool = False) -> str:
    """Rows under a header in columns two spaces apart; with `numeric`, every column but the first is right-aligned."""
    cells = [[str(v) for v in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def cell(i: int, v: str) -> str:
        return v.rjust(widths[i]) if numeric and i > 0 else v.ljust(widths[i])

    return "\n".join("  ".join(cell(i, v) for i, v in enumerate(r)).rstrip() for r in cells)
