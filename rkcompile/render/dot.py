"""DOT source of a compiled network: one cluster per block, its evaluations k_i and their RK edges.

Built with the `graphviz` Python package, which writes DOT text without needing the `dot` binary.
Levels: `block` expands every block; `network` collapses runs of identical consecutive steps into one
box marked ×N; `stage` draws one box per stage.
"""

from __future__ import annotations

from fractions import Fraction
from html import escape

import graphviz

from rkcompile import naming
from rkcompile.checkpointing import plain_model
from rkcompile.exact import display_coefficient, is_decimal_text
from rkcompile.render import matrix, tables
from rkcompile.render.metrics import Measures, Numbers
from rkcompile.render.shapes import UnitShapes, unit_shapes
from rkcompile.render.structure import BlockView, read_blocks, runs

__all__ = ["LEVELS", "RANKDIRS", "dot_source"]

LEVELS = ("network", "stage", "block")
RANKDIRS = ("TB", "LR")
_SCALES = {"h": "h learned (per block)", "skip": "× s (skip-init scalar)"}
_FONT = "Helvetica"


class _Options:
    """Drawing options every unit needs: tensor shapes on edges, the tableau view, element ids for the HTML view."""

    def __init__(self, shapes: UnitShapes | None, tableau_view: str, ids: bool) -> None:
        self.shapes, self.tableau_view, self.ids = shapes, tableau_view, ids

    def into(self, label: str) -> dict:
        """Edge attributes for the tensor entering unit `label`: its shape as the label, when shapes are drawn."""
        text = self.shapes.into(label) if self.shapes else ""
        return {"label": text, "fontcolor": "gray35"} if text else {}

    def id(self, value: str) -> dict:
        """An `id` attribute (kept in graphviz's SVG) when drawing for the HTML view."""
        return {"id": value} if self.ids else {}


def dot_source(model, measures: Measures, level: str = "network", color_by: str = "inference", *,
               rankdir: str = "TB", shapes: bool = False, tableau_view: str = "auto", ids: bool = False) -> str:
    """DOT text for a compiled GraphModule at the given level, annotated with `measures`.

    `shapes` labels edges with tensor shapes, `rankdir` "LR" lays the network out left to right,
    `tableau_view` draws steps as a DAG, as a Butcher matrix, or ("auto") as a matrix when dense.
    """
    opts = _Options(unit_shapes(model, measures.batch) if shapes else None, tableau_view, ids)
    spec = getattr(model, "spec", None)
    name = getattr(spec, "name", None) or type(model).__name__
    blocks = read_blocks(plain_model(model))  # checkpointed groups are one node each: read the plain graph
    g = graphviz.Digraph(name=name, graph_attr={
        "rankdir": rankdir, "newrank": "true", "fontname": _FONT, "nodesep": "0.25", "ranksep": "0.3",
        "label": f"<<B>{escape(name)}</B>  ({level} level, batch {measures.batch}, {measures.dtype})>",
        "labelloc": "t", "fontsize": "16"})
    g.attr("node", fontname=_FONT, fontsize="10", shape="box", style="rounded,filled", fillcolor="white")
    g.attr("edge", fontname=_FONT, fontsize="9")
    scale = tables.ColourScale(_colour_values(blocks, measures, level, color_by))
    g.node("x", "input x", shape="oval", group="spine")
    last = "x"
    if level == "stage":
        groups = _by_stage(blocks)
        for key, members in groups:
            last = _stage_box(g, key, members, measures, scale, color_by, spec, last, opts)
    else:
        params = {label: (n.parameters,) for label, n in measures.blocks.items()}
        unit_runs = runs(blocks, params) if level == "network" else [[b] for b in blocks]
        for run in unit_runs:
            last = _unit(g, run, measures, scale, color_by, spec, last, opts)
    g.node("output", "output", shape="oval", group="spine")
    out_shape = opts.shapes and opts.shapes.network_out
    g.edge(last, "output", weight="10", **({"label": "×".join(map(str, out_shape)), "fontcolor": "gray35"}
                                           if out_shape else {}))
    history = any(b.history for b in blocks)
    g.node("legend", tables.legend(scale, color_by, level, history), shape="plaintext", style="")
    g.node("totals", tables.totals(measures, blocks), shape="plaintext", style="")
    g.edge("output", "legend", style="invis")
    g.edge("output", "totals", style="invis")
    return g.source


def _colour_values(blocks: list[BlockView], measures: Measures, level: str, color_by: str) -> list[int]:
    if level == "stage":
        rows = [measures.stages.get(b.stage) if b.stage is not None else measures.blocks.get(b.label) for b in blocks]
    else:
        rows = [measures.blocks.get(b.label) for b in blocks]
    return [v for v in (tables.colour_value(r, color_by) for r in rows) if v is not None]


def _unit(g, run: list[BlockView], measures: Measures, scale, color_by: str, spec, last: str, opts: _Options) -> str:
    """One cluster for a unit (or a run of identical steps); returns the id of its output node."""
    first, n = run[0], len(run)
    uid = first.label.replace(".", "_") + (f"_to_{run[-1].block}" if n > 1 else "")
    numbers = measures.blocks.get(first.label, Numbers())
    rows = [measures.blocks.get(b.label, Numbers()) for b in run]
    values = [v for v in (tables.colour_value(r, color_by) for r in rows) if v is not None]
    with g.subgraph(name=f"cluster_{uid}") as c:
        c.attr(label=f"<{_title(run, spec)}>", style="rounded,filled", labeljust="l",
               fillcolor=scale.colour(max(values) if values else None),  # a run: its largest value
               color="gray40", **opts.id(f"unit:{first.label}" + (f"..{run[-1].label}" if n > 1 else "")))
        table = f"{uid}_table"
        owner = first.evaluations[0].owner if first.evaluations else None
        owner = owner if owner is not None and owner != first.label else None  # shared or basis weights: the stage
        layers = first.evaluations[0].layers if first.evaluations else None
        c.node(table, tables.numbers(numbers, each=n if n > 1 else None, owner=owner, layers=layers, run=rows),
               shape="plaintext", style="", tooltip=tables.tooltip(first.label, numbers))
        if first.kind == "step":
            entry, out = _step(c, uid, run, spec, opts)
        elif first.kind == "entry":
            entry, out = _entry(c, uid, first, spec)
        else:
            entry = out = f"{uid}_layers"
            c.node(entry, f"<<B>{first.kind}</B><BR/>{_arrows(first.layers)}>", group="spine")
        with c.subgraph() as same:
            same.attr(rank="same")
            same.node(entry)
            same.node(table)
    g.edge(last, entry, weight="10", **opts.into(first.label))
    return out


def _step(c, uid: str, run: list[BlockView], spec, opts: _Options) -> tuple[str, str]:
    """y_n, each k_i (weights, time), y_{n+1}; edges a_ij·h, b_i·h and the skip connection."""
    first, n0 = run[0], run[0].block
    step = "n" if len(run) > 1 else str(n0)
    nxt = "n+1" if len(run) > 1 else str(_number(first) + 1)
    h = _h(spec, first.stage)
    coef = _style(spec, first.stage)
    suffix = "·h" if first.learned_h else ""
    y_in, y_out = f"{uid}_y_in", f"{uid}_y_out"
    c.node(y_in, f"<y<SUB>{step}</SUB>>", shape="oval", group="spine")
    if matrix.use_matrix(first, opts.tableau_view):
        return _matrix_step(c, uid, run, spec, opts, step, nxt, suffix)
    for e in first.evaluations:
        weights = _weights([b.evaluations[e.index - 1].weights for b in run])
        time = _time(e.offset, h, step, _start(first) + e.offset if len(run) == 1 else None, coef)
        scaled = "".join(f"<BR/><FONT POINT-SIZE=\"9\">{_SCALES.get(s, '× ' + escape(s))}</FONT>" for s in e.scales)
        c.node(f"{uid}_k{e.index}", f"<<B>k<SUB>{e.index}</SUB></B> = F[{escape(weights)}]<BR/>"
                                     f"<FONT POINT-SIZE=\"9\">t = {time}</FONT>{scaled}>",
               **opts.id(f"eval:{first.label}:{e.index}"))
        first_input = e.index == 1
        c.edge(y_in, f"{uid}_k{e.index}", color="gray55" if first_input else "gray75",
               style="solid" if first_input else "dashed", arrowsize="0.5")
    for j, i, a in first.into:
        c.edge(f"{uid}_k{j}", f"{uid}_k{i}", label=coef(a) + suffix, color=tables.INTO, fontcolor=tables.INTO)
    after = f" <FONT POINT-SIZE=\"9\">(after {escape(first.after)})</FONT>" if first.after else ""
    c.node(y_out, f"<y<SUB>{nxt}</SUB>{after}>", shape="oval", group="spine")
    for i, b in first.out:
        c.edge(f"{uid}_k{i}", y_out, label=coef(b) + suffix, color=tables.OUT, fontcolor=tables.OUT)
    for label, coefficient, learned in first.history:  # a multistep step's carried history: y_{n−j}, f_{n−j}
        what, lag = label[0], int(label.rsplit("−", 1)[1].rstrip("}")) if "−" in label else 0
        node = y_in if (what, lag) == ("y", 0) else f"{uid}_k1" if lag == 0 else f"{uid}_{what}{lag}"
        if lag:
            index = f"n−{lag}" if len(run) > 1 else str(_number(first) - lag)
            c.node(node, f"<{what}<SUB>{index}</SUB>>", shape="oval", style="dashed,filled", fillcolor="white")
        # β_j·h^q as one number, like every other edge (the lowering folds h in); y_{n−j}'s α_j has no h
        text = f"{learned}<SUB>{step}</SUB>·({coef(coefficient)})" if learned else \
            coef(coefficient) + (suffix if what == "f" else "")
        c.edge(node, y_out, label=f"<{text}>" if learned else text, color=tables.HISTORY, fontcolor=tables.HISTORY,
               style="dashed")
    if first.skip != 0:
        c.edge(y_in, y_out, label=_skip(first, opts), style="bold", penwidth="2.5", color="black", weight="5")
    return y_in, y_out


def _number(view: BlockView) -> int:
    """A step's block number (the n of y_n)."""
    assert isinstance(view.block, int), "a step's view has its block number"
    return view.block


def _start(view: BlockView) -> Fraction | float:
    """A step's t_n; only called for a step with evaluations."""
    t_n = view.t_n
    assert t_n is not None, "a step with evaluations has a start time"
    return t_n


def _skip(view: BlockView, opts: _Options) -> str:
    """The skip edge's label, with the state's shape when shapes are drawn."""
    shape = opts.shapes.into(view.label) if opts.shapes else ""
    label = "skip" if view.skip == 1 else f"skip ×{_coef(view.skip)}"  # a multistep step's α_0 (second order: 2)
    return f"{label} · {shape}" if shape else label


def _matrix_step(c, uid: str, run: list[BlockView], spec, opts: _Options, step: str, nxt: str,
                 suffix: str) -> tuple[str, str]:
    """A dense step: y_n → its Butcher matrix (one heat-map table) → y_{n+1}, and the skip connection."""
    first = run[0]
    y_in, y_out, table = f"{uid}_y_in", f"{uid}_y_out", f"{uid}_tableau"
    h = _h(spec, first.stage)
    coef = _style(spec, first.stage)
    times = [_time(e.offset, h, step, _start(first) + e.offset if len(run) == 1 else None, coef)
             for e in first.evaluations]
    weights = [_weights([b.evaluations[e.index - 1].weights for b in run]) for e in first.evaluations]
    c.node(table, matrix.butcher_table(first, coef, times, weights, suffix), shape="plaintext", style="",
           **opts.id(f"tableau:{first.label}"))
    c.edge(y_in, table, color="gray55", arrowsize="0.5")
    after = f" <FONT POINT-SIZE=\"9\">(after {escape(first.after)})</FONT>" if first.after else ""
    c.node(y_out, f"<y<SUB>{nxt}</SUB>{after}>", shape="oval", group="spine")
    c.edge(table, y_out, label="<Σ<SUB>i</SUB> b<SUB>i</SUB>·h k<SUB>i</SUB>>",
           color=tables.OUT, fontcolor=tables.OUT)
    c.edge(y_in, y_out, label=_skip(first, opts), style="bold", penwidth="2.5", color="black", weight="5")
    return y_in, y_out


def _entry(c, uid: str, view: BlockView, spec=None) -> tuple[str, str]:
    """A stage's entry: F and the shortcut summed (stitch: shortcut + ε·R(x))."""
    x, f, short, out = (f"{uid}_{s}" for s in ("x", "f", "shortcut", "sum"))
    c.node(x, "<x>", shape="oval", group="spine")
    c.node(f, f"<<B>F</B><BR/>{_arrows(view.layers)}>")
    c.node(short, f"<<B>shortcut</B><BR/>{_arrows(view.shortcut) or 'identity'}>")
    after = f" <FONT POINT-SIZE=\"9\">then {escape(view.after)}</FONT>" if view.after else ""
    c.node(out, f"<+{after}>", shape="oval", group="spine")
    c.edge(x, f)
    c.edge(x, short)
    eps = view.epsilon if view.epsilon is not None else 1
    try:  # ε as the spec wrote it (0.1, not 1/10)
        decimal = is_decimal_text(spec.stages[view.stage].entry.epsilon.text)
    except (AttributeError, IndexError, TypeError):
        decimal = False
    c.edge(f, out, label="" if eps == 1 else _coef(eps, decimal), color=tables.OUT, fontcolor=tables.OUT)
    c.edge(short, out, style="bold")
    return x, out


def _stage_box(g, key, members: list[BlockView], measures: Measures, scale, color_by: str, spec, last: str,
               opts: _Options) -> str:
    """Stage level: one box per stage (or the stem / head)."""
    uid = naming.stage(key) if isinstance(key, int) else key
    if isinstance(key, int):
        numbers = measures.stages.get(key, Numbers())
        steps = [b for b in members if b.kind == "step"]
        entry = next((b for b in members if b.kind == "entry"), None)
        rows = tables.stage_rows(key, steps, entry, spec)
    else:
        numbers = measures.blocks.get(key, Numbers())
        rows = [(key, _arrows(members[0].layers))]
    g.node(uid, tables.stage_box(rows, numbers, scale.colour(tables.colour_value(numbers, color_by))),
           shape="plaintext", style="", tooltip=tables.tooltip(uid, numbers), **opts.id(f"unit:{uid}"))
    g.edge(last, uid, **opts.into(members[0].label))
    return uid


def _by_stage(blocks: list[BlockView]) -> list[tuple[object, list[BlockView]]]:
    out: list[tuple[object, list[BlockView]]] = []
    for b in blocks:
        key = b.stage if b.stage is not None else b.label
        if out and out[-1][0] == key:
            out[-1][1].append(b)
        else:
            out.append((key, [b]))
    return out


def _title(run: list[BlockView], spec) -> str:
    first, n = run[0], len(run)
    if first.kind != "step":
        return f"<B>{escape(naming.display(first.label, _names(spec)))}</B>"
    name = _integrator(spec, first.stage) + (f" (start-up: {first.startup})" if first.startup else "")
    blocks = f"block {first.block}" if n == 1 else f"blocks {first.block}–{run[-1].block}"
    times = f"  <B>×{n}</B>" if n > 1 else ""
    assert first.stage is not None, "a step belongs to a stage"
    again = "  (recomputed in backward)" if _recomputed(spec, first.stage, first.block) else \
        "  (reversible: rebuilt in backward)" if _reversible(spec, first.stage) else ""
    return f"<B>{escape(stage_title(spec, first.stage))} · {blocks}</B>{times}  {escape(name)}{again}"


def stage_title(spec, stage: int) -> str:
    """`stage0`, or `body (stage0)` for a stage with a `name` (the docs' "a label for tables and drawings")."""
    names = _names(spec)
    name = names[stage] if 0 <= stage < len(names) else None
    return f"{name} ({naming.stage(stage)})" if name else naming.stage(stage)


def _names(spec) -> list:
    """Each stage's `name` (None where unnamed); none without a spec."""
    return [getattr(s, "name", None) for s in getattr(spec, "stages", ())]


def _recomputed(spec, stage: int | None, block) -> bool:
    """True when the block lies in one of its stage's checkpoint groups."""
    try:
        groups = spec.stages[stage].checkpoint or ()
    except (AttributeError, IndexError, TypeError):
        return False
    return any(a <= block <= b for a, b in groups)


def _reversible(spec, stage: int | None) -> bool:
    """True when the stage runs with `backprop: reversible`."""
    try:
        return spec.stages[stage].backprop == "reversible"
    except (AttributeError, IndexError, TypeError):
        return False


def _integrator(spec, stage: int | None) -> str:
    try:
        return spec.stages[stage].tableau.name
    except (AttributeError, IndexError, TypeError):
        return ""


def _h(spec, stage: int | None):
    try:
        return spec.stages[stage].h
    except (AttributeError, IndexError, TypeError):
        return None


def _weights(labels: list[str]) -> str:
    """One weights label, or 'first … last' when the run uses different weights at this evaluation."""
    unique = list(dict.fromkeys(labels))
    return unique[0] if len(unique) == 1 else f"{unique[0]} … {unique[-1]}"


def _time(offset, h, step: str, absolute, coef=None) -> str:
    """`t_n + c_i·h` (c_i as the tableau writes it), and the absolute time for a single block."""
    coef = coef or _coef
    if offset == 0:
        rel = f"t<SUB>{step}</SUB>"
    elif h:
        c = offset / h
        rel = f"t<SUB>{step}</SUB> + " + ("h" if c == 1 else f"{coef(c)}·h")
    else:
        rel = f"t<SUB>{step}</SUB> + {coef(offset)}"
    return rel if absolute is None else f"{rel} = {coef(absolute)}"


def _coef(x, decimal: bool = False) -> str:
    """A coefficient as written: exact fractions as fractions ("-27/140"), values from decimal literals as
    decimals ("0.161"), irrational ones to 4 significant digits (`exact.display_coefficient`)."""
    return display_coefficient(x, decimal)


def _style(spec, stage: int | None):
    """The coefficient formatter for a stage: decimal when its tableau was written in decimals (tsit5)."""
    try:
        decimal = bool(getattr(spec.stages[stage].tableau, "decimal", False))
    except (AttributeError, IndexError, TypeError):
        decimal = False
    return lambda x: _coef(x, decimal)


def _arrows(layers: list[str]) -> str:
    return " → ".join(escape(x) for x in layers)
