"""What was compiled, read back from the graph: blocks, their evaluations k_i and the Runge–Kutta edges.

Everything here comes from `node.meta["rk"]` written by the compiler (role, stage, block, eval, weights,
time, source, coefficient), so a drawing shows the graph that runs, not what the spec asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from torch import fx

__all__ = ["Evaluation", "BlockView", "read_blocks", "runs"]


@dataclass
class Evaluation:
    """One evaluation k_i = F(z_i, t_n + c_i h) of a step: its weights label, time and layers."""

    index: int
    weights: str
    time: Fraction | float
    offset: Fraction | float  # c_i * h = time - t_n (c_1 = 0 for every explicit tableau)
    layers: list[str] = field(default_factory=list)
    scales: list[str] = field(default_factory=list)  # parameters multiplied into k_i: "h" (learned), "skip"


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
    nodes: int = 0
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
        return (self.kind, self.stage, evals, into, out, tuple(self.layers), tuple(self.shortcut),
                self.epsilon, self.after)


def read_blocks(module: fx.GraphModule) -> list[BlockView]:
    """Group the graph's nodes into blocks, in execution order, from their `rk` metadata."""
    blocks: dict[str, BlockView] = {}
    for node in module.graph.nodes:
        rk = node.meta.get("rk")
        if not rk or rk["role"] == "input":
            continue
        view = blocks.get(_label(rk))
        if view is None:
            view = blocks[_label(rk)] = _new_view(rk)
        view.nodes += 1
        _add(view, node, rk)
    for view in blocks.values():
        view.evaluations.sort(key=lambda e: e.index)
        if view.evaluations:
            t0 = view.evaluations[0].time
            for e in view.evaluations:
                e.offset = e.time - t0
    return list(blocks.values())


def runs(blocks: list[BlockView], numbers: dict[str, tuple]) -> list[list[BlockView]]:
    """Split blocks into runs of identical consecutive steps (same shape and same analysis numbers)."""
    out: list[list[BlockView]] = []
    for view in blocks:
        last = out[-1][-1] if out else None
        if (last is not None and view.kind == "step" and last.kind == "step"
                and view.shape() == last.shape() and numbers.get(view.label) == numbers.get(last.label)):
            out[-1].append(view)
        else:
            out.append([view])
    return out


def _key(x: Fraction | float) -> Fraction | float:
    """A comparison key that ignores float round-off (t_n + c h - t_n is not exactly c h in floats)."""
    return x if isinstance(x, Fraction) else float(f"{x:.9g}")


def _label(rk: dict) -> str:
    role = rk["role"]
    if role in ("stem", "head"):
        return role
    if rk.get("block") == "entry":
        return f"stage{rk['stage']}.entry"
    return f"stage{rk['stage']}.block{rk['block']}"


def _new_view(rk: dict) -> BlockView:
    role = rk["role"]
    if role in ("stem", "head"):
        return BlockView(label=role, kind=role)
    kind = "entry" if rk.get("block") == "entry" else "step"
    return BlockView(label=_label(rk), kind=kind, stage=rk.get("stage"), block=rk.get("block"))


def _add(view: BlockView, node: fx.Node, rk: dict) -> None:
    """Record one node's contribution to its block."""
    role, layer = rk["role"], rk.get("layer")
    if view.kind in ("stem", "head"):
        view.layers.append(layer or _function_name(node))
    elif view.kind == "entry":
        _add_entry(view, node, rk)
    elif role == "eval":
        _evaluation(view, rk).layers.append(layer)
    elif role == "stage-input":
        view.into.append((rk["source"], rk["eval"], rk["coefficient"]))
    elif role == "output":
        view.out.append((rk["source"], rk["coefficient"]))
    elif role == "register":  # the minimal-register lowering records the tableau's edges on its output node
        view.into.extend(rk.get("into", ()))
        view.out.extend(rk.get("out", ()))
    elif role == "after":
        view.after = _function_name(node)
    elif role == "scale":
        owner = next((a for a in node.args if isinstance(a, fx.Node) and a.op == "get_attr"), None)
        name = str(owner.target).rsplit(".", 1)[-1] if owner is not None else "scale"
        _evaluation(view, rk).scales.append(name)


def _add_entry(view: BlockView, node: fx.Node, rk: dict) -> None:
    """An entry (transition or stitch): F's layers, the shortcut's layers, the sum and its activation."""
    target = str(node.target) if node.op == "call_module" else ""
    first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    if ".f." in target or (first is not None and first.name in view.f_nodes):  # F: the data flow from F's first layer
        view.f_nodes.add(node.name)
        view.layers.append(rk.get("layer") or _function_name(node))
    elif rk["role"] == "output":
        alpha = node.kwargs.get("alpha")
        view.epsilon = Fraction(1) if alpha is None else alpha
    elif view.epsilon is not None:  # anything after the sum is its activation
        view.after = _function_name(node)
    else:
        view.shortcut.append(rk.get("layer") or node.name.rsplit("_", 1)[-1])


def _evaluation(view: BlockView, rk: dict) -> Evaluation:
    for e in view.evaluations:
        if e.index == rk["eval"]:
            return e
    e = Evaluation(rk["eval"], rk.get("weights", "?"), rk.get("time", 0), 0)
    view.evaluations.append(e)
    return e


def _function_name(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target).rsplit(".", 1)[-1]
    name = getattr(node.target, "__name__", str(node.target))
    return {"getitem": "subsample", "adaptive_avg_pool2d": "avgpool"}.get(name, name)
