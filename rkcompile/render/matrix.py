"""The Butcher-matrix view of a dense step: one heat-map table of a_ij·h and b_i·h instead of ~100 edges.

A block of Verner's 8(9) pair (Verner 1978) has 56 edges k_j → k_i and 8 into y_{n+1}; drawn as a DAG their
labels overlap. The table keeps every coefficient exact (fractions as written) and colours cells by sign and
magnitude (log scale), so the structure of A stays visible. `auto` picks it above `DENSE_EDGES`.
"""

from __future__ import annotations

import math
from html import escape

from rkcompile.render.structure import BlockView

__all__ = ["TABLEAU_VIEWS", "DENSE_EDGES", "use_matrix", "butcher_table"]

TABLEAU_VIEWS = ("auto", "dag", "matrix")
#: Above this many coefficient edges (a_ij and b_i), `auto` draws the matrix: RK4 has 7, Dormand–Prince 5(4)
#: 20, Verner 8(9) 64.
DENSE_EDGES = 32
# ColorBrewer "RdBu", light ends only (black text stays readable): positive blues, negative reds, weak → strong.
_POSITIVE = ("#eff6fb", "#d1e5f0", "#a6cfe4", "#92c5de")
_NEGATIVE = ("#fdf0ea", "#fddbc7", "#f7c2a6", "#f4a582")


def use_matrix(view: BlockView, tableau_view: str) -> bool:
    """Whether a step is drawn as its Butcher matrix under `tableau_view` ("auto", "dag" or "matrix")."""
    if view.kind != "step" or tableau_view == "dag":
        return False
    return tableau_view == "matrix" or len(view.into) + len(view.out) > DENSE_EDGES


def butcher_table(view: BlockView, coef, times: list[str], weights: list[str], suffix: str = "") -> str:
    """The HTML-like label: one row per evaluation k_i (weights, time, a_ij·h), then the b_i·h row."""
    s = len(view.evaluations)
    index = {e.index: r for r, e in enumerate(view.evaluations)}
    a = {(index[i], index[j]): x for j, i, x in view.into if i in index and j in index}
    b = {index[i]: x for i, x in view.out if i in index}
    values = [abs(float(x)) for x in (*a.values(), *b.values()) if x != 0]
    low, high = (min(values), max(values)) if values else (1.0, 1.0)
    head = "".join(f"<TD><B>k<SUB>{e.index}</SUB></B></TD>" for e in view.evaluations)
    rows = [f"<TR><TD><B>evaluation</B></TD><TD><B>time</B></TD>{head}</TR>"]
    for r, e in enumerate(view.evaluations):
        cells = "".join(_cell(a.get((r, j)), coef, low, high, suffix) for j in range(s))
        rows.append(f"<TR><TD ALIGN=\"LEFT\"><B>k<SUB>{e.index}</SUB></B> = F[{escape(weights[r])}]</TD>"
                    f"<TD ALIGN=\"LEFT\">{times[r]}</TD>{cells}</TR>")
    total = "".join(_cell(b.get(j), coef, low, high, suffix) for j in range(s))
    rows.append(f"<TR><TD COLSPAN=\"2\" ALIGN=\"LEFT\"><B>b<SUB>i</SUB>·h</B> into y<SUB>n+1</SUB></TD>{total}</TR>")
    rows.append(f"<TR><TD COLSPAN=\"{s + 2}\" ALIGN=\"LEFT\"><FONT POINT-SIZE=\"8\">row k<SUB>i</SUB>, column "
                f"k<SUB>j</SUB>: a<SUB>ij</SUB>·h, added into k<SUB>i</SUB>'s input (which starts from y<SUB>n</SUB>); "
                f"blue &gt; 0, red &lt; 0, darker = larger |coefficient| (log scale)</FONT></TD></TR>")
    return (f"<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"2\" BGCOLOR=\"white\">"
            f"{''.join(rows)}</TABLE>>")


def _cell(x, coef, low: float, high: float, suffix: str) -> str:
    if x is None or x == 0:
        return "<TD> </TD>"
    return f"<TD BGCOLOR=\"{_colour(float(x), low, high)}\">{coef(x)}{suffix}</TD>"


def _colour(x: float, low: float, high: float) -> str:
    """A shade by sign and log-magnitude between the smallest and largest |coefficient| of the block."""
    palette = _POSITIVE if x > 0 else _NEGATIVE
    if high <= low:
        return palette[-1]
    level = (math.log(abs(x)) - math.log(low)) / (math.log(high) - math.log(low))
    return palette[min(len(palette) - 1, int(level * len(palette)))]
