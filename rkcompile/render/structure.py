"""What was compiled, read back from the graph: blocks, their evaluations k_i and the Runge–Kutta edges.

Everything here comes from the `NodeMeta` record the compiler writes on every node (`rkcompile.graphmeta`:
role, stage, block, evaluation, part, weights, time, source, coefficient), so a drawing shows the graph that
runs, not what the spec asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from torch import fx

from rkcompile import graphmeta, naming
from rkcompile.graphmeta import NodeMeta, Part, Role

__all__ = ["Evaluation", "BlockView", "read_blocks", "runs"]


@dataclass
class Evaluation:
    """One evaluation k_i = F(z_i, t_n + c_i h) of a step: its weights label, time and layers."""

    index: int
    weights: str  # the F's path below its stage: "block3.eval2", "f", "piece1"
    time: Fraction | float
    offset: Fraction | float  # c_i * h = time - t_n (c_1 = 0 for every explicit tableau)
    layers: list[str] = field(default_factory=list)
    scales: list[str] = field(default_factory=list)  # parameters multiplied into k_i: "h" (learned), "skip"
    owner: str | None = None  # the unit owning F's weights: the block (per evaluation) or the stage
    nodes: list[str] = field(default_factory=list)  # the graph nodes of its layers, in order
    terms: int = 1  # the basis functions mixed into its weights (a continuous basis: 1 or 2 for linear)


@dataclass
class BlockView:
    """One block as compiled: the stem, a stage's entry, one integrator step, or the head."""

    label: str  # the analysis label: "stem", "stage1.entry", "stage0.block3", "head"
    kind: str  # "stem" | "entry" | "step" | "head"
    stage: int | None = None
    block: int | str | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    into: list[tuple[int, int, Fraction | float]] = field(default_factory=list)  # (j, i, a_ij h)
    out: list[tuple[int, Fraction | float]] = field(default_factory=list)  # (i, b_i h)
    layers: list[str] = field(default_factory=list)  # stem / head / entry F layers
    shortcut: list[str] = field(default_factory=list)  # entry: the shortcut's layers
    epsilon: Fraction | float | None = None  # entry (stitch): scale of R(x)
    after: str | None = None  # activation applied after the residual sum
    history: list[tuple[str, Fraction | float | str, str | None]] = field(default_factory=list)  # multistep terms:
    # (y_{n−j} or f_{n−j}, its coefficient, the learnable coefficient multiplying it or None)
    skip: Fraction | float = 1  # the coefficient of y_n in y_{n+1} (0 for leapfrog, 2 for second order)
    startup: str | None = None  # the RK method of a multistep stage's start-up step
    nodes: int = 0
    node_names: list[str] = field(default_factory=list, repr=False)  # every graph node of the block, in order
    shapes: list[tuple | None] = field(default_factory=list, repr=False)  # each node's output shape, when known
    f_nodes: set[str] = field(default_factory=set, repr=False)

    @property
    def t_n(self) -> Fraction | float | None:
        """The step's start time t_n (the time of k_1)."""
        return self.evaluations[0].time if self.evaluations else None

    @property
    def learned_h(self) -> bool:
        """True when h is a parameter multiplied into each k (coefficients then carry a_ij, not a_ij h)."""
        return any("h" in e.scales for e in self.evaluations)

    def shape(self) -> tuple:
        """What makes two blocks draw the same, ignoring which weights and which absolute times they use."""
        evals = tuple((_key(e.offset), tuple(e.layers), tuple(e.scales)) for e in self.evaluations)
        into = tuple((j, i, _key(a)) for j, i, a in self.into)
        out = tuple((i, _key(b)) for i, b in self.out)
        history = tuple((label, _key(c) if not isinstance(c, str) else c, learned)
                        for label, c, learned in self.history)
        return (self.kind, self.stage, evals, into, out, tuple(self.layers), tuple(self.shortcut),
                self.epsilon, self.after, history, self.skip, self.startup)

    def structure(self) -> tuple:
        """What makes two blocks one block drawn ×N: the same drawing (`shape`), the same tensor shapes at every
        node, and the same weight layout (own weights or the stage's, and how many basis terms each F mixes)."""
        layout = tuple((e.owner == self.label, e.terms) for e in self.evaluations)
        return self.shape(), tuple(self.shapes), layout


def read_blocks(module: fx.GraphModule) -> list[BlockView]:
    """Group the graph's nodes into blocks, in execution order, from their `NodeMeta` records."""
    blocks: dict[str, BlockView] = {}
    for node in module.graph.nodes:
        rk = graphmeta.get(node)
        if rk is None or rk.unit is None:
            continue
        view = blocks.get(rk.unit)
        if view is None:
            view = blocks[rk.unit] = _new_view(rk)
        view.nodes += 1
        view.node_names.append(node.name)
        view.shapes.append(_output_shape(node))
        _add(view, node, rk)
    for view in blocks.values():
        view.evaluations.sort(key=lambda e: e.index)
        if view.evaluations:
            t0 = view.evaluations[0].time
            for e in view.evaluations:
                e.offset = e.time - t0
    return list(blocks.values())


def runs(blocks: list[BlockView], extra: dict[str, tuple] | None = None) -> list[list[BlockView]]:
    """Split blocks into runs of consecutive steps of the same structure (`BlockView.structure`, and the `extra`
    key of each label when given), whatever their memory figures: what differs between them is drawn as a range."""
    extra = extra or {}
    out: list[list[BlockView]] = []
    for view in blocks:
        last = out[-1][-1] if out else None
        if (last is not None and view.kind == "step" and last.kind == "step"
                and view.structure() == last.structure() and extra.get(view.label) == extra.get(last.label)):
            out[-1].append(view)
        else:
            out.append([view])
    return out


def _output_shape(node: fx.Node) -> tuple | None:
    """The node's output shape from the analysis' record or torch.fx's `tensor_meta`, None when not propagated."""
    cost = node.meta.get("cost")
    if cost is not None:
        return cost.get("shape")
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _key(x: Fraction | float) -> Fraction | float:
    """A comparison key that ignores float round-off (t_n + c h - t_n is not exactly c h in floats)."""
    return x if isinstance(x, Fraction) else float(f"{x:.9g}")


def _new_view(rk: NodeMeta) -> BlockView:
    label = rk.unit
    assert label is not None, "read_blocks skips nodes outside any unit"
    if rk.role in (Role.STEM, Role.HEAD):
        return BlockView(label=label, kind=rk.role.value)
    if rk.entry:
        return BlockView(label=label, kind="entry", stage=rk.stage, block="entry")
    return BlockView(label=label, kind="step", stage=rk.stage, block=rk.block)


def _add(view: BlockView, node: fx.Node, rk: NodeMeta) -> None:
    """Record one node's contribution to its block."""
    role, layer = rk.role, rk.layer
    if view.kind in ("stem", "head"):
        view.layers.append(layer or _function_name(node))
    elif view.kind == "entry":
        _add_entry(view, node, rk)
    elif role is Role.EVAL:
        assert layer is not None, "the compiler names the layer of every evaluation node"
        _evaluation(view, rk).layers.append(layer)
        _evaluation(view, rk).nodes.append(node.name)
    elif role is Role.STAGE_INPUT:
        assert rk.source is not None and rk.evaluation is not None and rk.coefficient is not None, \
            "a stage-input node records its edge (j, i, a_ij h)"
        view.into.append((rk.source, rk.evaluation, rk.coefficient))
    elif role is Role.OUTPUT:
        assert rk.source is not None and rk.coefficient is not None, "an output node records its edge (i, b_i h)"
        view.out.append((rk.source, rk.coefficient))
        view.skip = rk.skip if rk.skip is not None else view.skip
        view.startup = rk.startup or view.startup
    elif role is Role.HISTORY:
        if rk.history == "y_n" and not rk.learned:
            assert rk.coefficient is not None, "a history node records its coefficient"
            view.skip = rk.coefficient
        elif rk.history != "learned":
            assert rk.history is not None and rk.coefficient is not None, "a history node records its term"
            view.history.append((rk.history, rk.coefficient, rk.learned))
    elif role is Role.REGISTER and rk.into is not None:  # the minimal-register lowering's output node
        assert rk.out is not None, "the register lowering records into and out together"
        view.into.extend(rk.into)
        view.out.extend(rk.out)
    elif role is Role.AFTER:
        view.after = _function_name(node)
    elif role is Role.SCALE:
        owner = next((a for a in node.args if isinstance(a, fx.Node) and a.op == "get_attr"), None)
        name = str(owner.target).rsplit(".", 1)[-1] if owner is not None else "scale"
        _evaluation(view, rk).scales.append(name)


def _add_entry(view: BlockView, node: fx.Node, rk: NodeMeta) -> None:
    """An entry (transition or stitch): F's layers, the shortcut's layers, the sum and its activation."""
    if rk.part is Part.F:
        view.layers.append(rk.layer or _function_name(node))
    elif rk.part is Part.SHORTCUT:
        view.shortcut.append(rk.layer or node.name.rsplit("_", 1)[-1])
    elif rk.role is Role.OUTPUT:
        alpha = node.kwargs.get("alpha")
        assert alpha is None or isinstance(alpha, (int, float, Fraction)), "an entry's alpha is a number"
        view.epsilon = Fraction(1) if alpha is None else alpha
    elif rk.role is Role.AFTER:
        view.after = _function_name(node)


def _evaluation(view: BlockView, rk: NodeMeta) -> Evaluation:
    assert rk.evaluation is not None, "evaluation and scale nodes record their evaluation's index"
    for e in view.evaluations:
        if e.index == rk.evaluation:
            return e
    weights = rk.weights or "?"
    label = naming.local(weights) if rk.weights else weights
    if rk.mix and (len(rk.mix) > 1 or rk.mix[0][1] != 1):  # a continuous basis: the F it mixes, with phi_beta(t)
        label = " + ".join(f"{float(w):.4g}·{naming.local(path)}" for path, w in rk.mix)
    e = Evaluation(rk.evaluation, label,
                   rk.time if rk.time is not None else 0, 0, owner=naming.owner(weights) if rk.weights else None,
                   terms=len(rk.mix) if rk.mix else 1)
    view.evaluations.append(e)
    return e


def _function_name(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target).rsplit(".", 1)[-1]
    name = getattr(node.target, "__name__", str(node.target))
    return {"getitem": "subsample", "adaptive_avg_pool2d": "avgpool"}.get(name, name)
