"""HTML-like tables (graphviz labels) for a drawing: per-block numbers, stage boxes, legend, totals, colours."""

from __future__ import annotations

from html import escape

from rkcompile import naming
from rkcompile.render.metrics import FIELDS, Measures, Numbers, count, flops, size, spread
from rkcompile.render.structure import BlockView

__all__ = ["COLOR_BY", "ColourScale", "colour_value", "numbers", "legend", "totals", "stage_rows", "stage_box", "tooltip"]

# ColorBrewer "YlOrBr", its light half: black text and the blue and green edges stay readable on all of it.
PALETTE = ("#ffffe5", "#fff7bc", "#fee391", "#fec44f", "#fe9929")
#: Edge colours: a_ij·h into a stage input, b_i·h into the step's output.
INTO, OUT = "#2166ac", "#1b7837"
HISTORY = "#762a83"  # multistep terms from y_{n−j}, f_{n−j}
_METRIC = {"inference": ("inference_peak", "inference peak"), "saved": ("saved_bytes", "saved for backward"),
           "training": ("training_peak", "training peak"), "flops": ("flops", "FLOPs")}
#: What a drawing can be coloured by (`--color-by`).
COLOR_BY = tuple(_METRIC)


class ColourScale:
    """Maps a memory value onto PALETTE, linearly between the smallest and largest value drawn."""

    def __init__(self, values: list[int]) -> None:
        self.low = min(values) if values else None
        self.high = max(values) if values else None

    def colour(self, value: int | None) -> str:
        """The fill colour of a block whose memory is `value` (white when unknown)."""
        low, high = self.low, self.high
        if value is None or low is None or high is None:  # low and high are None together (no values)
            return "white"
        if high == low:
            return PALETTE[0]
        step = (value - low) / (high - low) * (len(PALETTE) - 1)
        return PALETTE[round(step)]

    def bounds(self, i: int) -> tuple[float, float] | None:
        """The value range painted with PALETTE[i]."""
        low, high = self.low, self.high
        if low is None or high is None:  # None together (no values)
            return None
        width = (high - low) / (len(PALETTE) - 1)
        return low + (i - 0.5) * width, low + (i + 0.5) * width


def colour_value(row: Numbers | None, color_by: str) -> int | None:
    """The number a block is coloured by: its inference peak, saved bytes, training peak or FLOPs."""
    return None if row is None else getattr(row, _METRIC[color_by][0])


def numbers(row: Numbers, each: int | None = None, owner: str | None = None, layers: list[str] | None = None,
            run: list[Numbers] | None = None) -> str:
    """The small table beside a block: parameters, inference peak, saved-for-backward, FLOPs.

    `owner` names the stage holding this block's F when F's weights are shared or basis pieces (the
    analysis counts those once, in the stage row). `run` holds the rows of every block drawn as this one
    (×N): a figure that differs between them is shown as a range, smallest–largest.
    """
    rows = run or [row]
    head = f"<TR><TD COLSPAN=\"2\"><I>each of ×{each}</I></TD></TR>" if each else ""
    if layers:
        head += f"<TR><TD COLSPAN=\"2\">F = {' → '.join(escape(x) for x in layers)}</TD></TR>"
    params = spread([r.parameters for r in rows], count)
    if owner and not row.parameters:
        params = f"{params} (F in {escape(owner)})"
    cells = [("parameters", params), ("inference peak", spread([r.inference_peak for r in rows], size)),
             ("saved for backward", spread([r.saved_bytes for r in rows], size)),
             ("FLOPs", spread([r.flops for r in rows], flops))]
    body = "".join(f"<TR><TD ALIGN=\"LEFT\">{k}</TD><TD ALIGN=\"RIGHT\">{v}</TD></TR>" for k, v in cells)
    return (f"<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"2\" BGCOLOR=\"white\">"
            f"{head}{body}</TABLE>>")


def legend(scale: ColourScale, color_by: str, level: str, history: bool = False) -> str:
    """The legend: what nodes, edges and colours mean (`history`: the drawing has multistep steps)."""
    name = _METRIC[color_by][1]
    if scale.low is None:
        swatches = f"<TD COLSPAN=\"{len(PALETTE)}\">no memory figures</TD>"
    elif scale.low == scale.high:
        swatches = f"<TD COLSPAN=\"{len(PALETTE)}\" BGCOLOR=\"{PALETTE[0]}\">{_value(scale.low, color_by)} (every block)</TD>"
    else:
        swatches = ""
        for i, colour in enumerate(PALETTE):
            bounds = scale.bounds(i)
            assert bounds is not None  # scale.low is set in this branch
            low, high = bounds
            swatches += f"<TD BGCOLOR=\"{colour}\">≈ {_value(max(0, round((low + high) / 2)), color_by)}</TD>"
    rows = [f"<TR><TD COLSPAN=\"{len(PALETTE)}\"><B>legend</B></TD></TR>"]
    if level == "stage":
        rows += [_wide(f"fill colour: {name} of the stage (light → dark)"), f"<TR>{swatches}</TR>"]
        return f"<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"3\">{''.join(rows)}</TABLE>>"
    rows += [
        _wide("k<SUB>i</SUB> = F[weights]: the i-th evaluation, at time t<SUB>n</SUB> + c<SUB>i</SUB>·h; "
              "coefficients as written: fractions, decimals, irrational ones to 4 digits"),
        _wide(f"<FONT COLOR=\"{INTO}\">blue edge k<SUB>j</SUB> → k<SUB>i</SUB></FONT>: a<SUB>ij</SUB>·h, "
              "added into k<SUB>i</SUB>'s input, which starts from y<SUB>n</SUB> (grey)"),
        _wide(f"<FONT COLOR=\"{OUT}\">green edge k<SUB>i</SUB> → y<SUB>n+1</SUB></FONT>: b<SUB>i</SUB>·h; "
              "bold edge: the skip connection y<SUB>n</SUB> → y<SUB>n+1</SUB>"),
        _wide(f"fill colour: {name} of the block (light → dark)"),
        f"<TR>{swatches}</TR>",
    ]
    if history:
        rows.insert(3, _wide(f"<FONT COLOR=\"{HISTORY}\">purple dashed edge y<SUB>n−j</SUB>, f<SUB>n−j</SUB> → "
                             "y<SUB>n+1</SUB></FONT>: a multistep step's history, α<SUB>j</SUB> and β<SUB>j</SUB>·h "
                             "(β<SUB>j</SUB>·h² for y'' = F); its current f<SUB>n</SUB> = k<SUB>1</SUB> is the green "
                             "edge, β<SUB>0</SUB>·h"))
    if level == "network":
        rows.insert(-1, _wide("<B>×N</B>: N consecutive blocks of one structure (layers, shapes, tableau, weight "
                              "layout) drawn once; numbers are per block, smallest–largest where they differ"))
    return f"<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"3\">{''.join(rows)}</TABLE>>"


def totals(measures: Measures, blocks: list[BlockView]) -> str:
    """The whole network's numbers."""
    t = measures.total
    evaluations = sum(len(b.evaluations) for b in blocks)
    steps = sum(1 for b in blocks if b.kind == "step")
    cells = [("parameters", _exact(t.parameters)), ("steps / evaluations", f"{steps} / {evaluations}"),
             ("inference peak", size(t.inference_peak)), ("saved for backward", size(t.saved_bytes)),
             ("training peak", size(t.training_peak)), ("FLOPs (forward)", flops(t.flops)),
             ("batch, dtype", f"{measures.batch}, {measures.dtype}")]
    body = "".join(f"<TR><TD ALIGN=\"LEFT\">{k}</TD><TD ALIGN=\"RIGHT\">{v}</TD></TR>" for k, v in cells)
    return (f"<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"3\">"
            f"<TR><TD COLSPAN=\"2\"><B>totals</B></TD></TR>{body}</TABLE>>")


def stage_rows(stage: int, steps: list[BlockView], entry: BlockView | None, spec) -> list[tuple[str, str]]:
    """What a stage box says: entry, integrator, steps × evaluations, weights."""
    per = len(steps[0].evaluations) if steps else 0
    name = ""
    try:
        s = spec.stages[stage]
        name = f"{s.tableau.name} (order {s.tableau.order})"
        weights = s.weights.kind + (f" ({s.weights.pieces} pieces)" if s.weights.kind == "basis" else "")
        if getattr(s.weights, "mixes", False):  # a continuous basis: its family and size
            weights = s.weights.label()
    except (AttributeError, IndexError, TypeError):
        weights = ", ".join(sorted({e.owner for b in steps for e in b.evaluations if e.owner}))[:40]
    try:  # a named stage: "body (stage0)", as the docs promise the name for drawings
        label = spec.stages[stage].name
    except (AttributeError, IndexError, TypeError):
        label = None
    title = naming.stage(stage)
    rows = [(escape(f"{label} ({title})" if label else title), escape(name))]
    if entry is not None:
        short = " → ".join(escape(x) for x in entry.shortcut) or "identity"
        eps = "" if entry.epsilon in (None, 1) else f"{entry.epsilon:g}·"
        rows.append(("entry", f"{short} + {eps}F({' → '.join(escape(x) for x in entry.layers)})"))
    rows.append(("steps × evaluations", f"{len(steps)} × {per} = {len(steps) * per}"))
    rows.append(("weights", escape(weights)))
    try:
        time = spec.stages[stage].time
    except (AttributeError, IndexError, TypeError):
        time = None
    if time is not None and time.active:  # F(y, t): how F receives the times its evaluations are labelled with
        rows.append(("time", escape(f"F(y, t): {time.label()}")))
    return rows


def stage_box(rows: list[tuple[str, str]], row: Numbers, colour: str) -> str:
    """A stage-level box: a description and the stage's numbers."""
    title, sub = rows[0]
    cells = [f"<TR><TD COLSPAN=\"2\"><B>{escape(title)}</B> {sub}</TD></TR>"]
    cells += [f"<TR><TD ALIGN=\"LEFT\">{k}</TD><TD ALIGN=\"LEFT\">{v}</TD></TR>" for k, v in rows[1:]]
    cells += [f"<TR><TD ALIGN=\"LEFT\">{k}</TD><TD ALIGN=\"RIGHT\">{v}</TD></TR>" for k, v in (
        ("parameters", count(row.parameters)), ("inference peak", size(row.inference_peak)),
        ("saved for backward", size(row.saved_bytes)), ("FLOPs", flops(row.flops)))]
    return (f"<<TABLE BORDER=\"1\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"3\" BGCOLOR=\"{colour}\">"
            f"{''.join(cells)}</TABLE>>")


def _value(n: int, color_by: str) -> str:
    """A legend value in the metric's unit: FLOPs in K/M/G, the others in bytes."""
    return flops(n) if color_by == "flops" else size(n)


def _wide(text: str) -> str:
    return f"<TR><TD COLSPAN=\"{len(PALETTE)}\" ALIGN=\"LEFT\">{text}</TD></TR>"


def _exact(n: int | None) -> str:
    return "–" if n is None else (f"{n:,}" if n < 1000 else f"{n:,} ({count(n)})")


def tooltip(label: str, row: Numbers) -> str:
    """Exact figures for hovering over a block's table in an SVG: 'stage0.block3: parameters=..., ...'."""
    return f"{label}: " + ", ".join(f"{f}={getattr(row, f)}" for f in FIELDS)
