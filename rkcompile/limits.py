"""Resource limits checked before anything is allocated: parameters, graph size and activation bytes of a spec.

Two passes. `check_bounds` is arithmetic on the validated spec (no torch): a lower bound on the parameters
(the weights of every conv/linear/norm times the copies of F that the weight mode makes), on the graph size
(evaluations x layers of F) and on the largest activation of one forward at batch 1. A spec whose lower bound
passes a limit is refused in milliseconds. When a lower bound comes within `EXACT_MARGIN` of a limit,
`check_exact` builds the network on the meta device (no memory) and counts exactly; the compiler always does.
The defaults are far above every network of the papers (the largest, resnet50-imagenet, has 25.6M parameters and
under 700 graph nodes); raise them with `--max-params/--max-nodes/--max-activation` or `limits=Limits(...)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from rkcompile.errors import CompileError

__all__ = ["Limits", "DEFAULT", "Estimate", "estimate", "check_bounds", "needs_exact", "check_exact", "check_counts",
           "check_float"]

#: A lower bound within this factor of a limit triggers the exact count on the meta device.
EXACT_MARGIN = 4


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one spec may ask for; each is overridable for users who want a huge network."""

    #: parameters of the whole network
    max_params: int = 2_000_000_000
    #: graph nodes (and layer modules) of the compiled GraphModule
    max_nodes: int = 200_000
    #: bytes of the largest single activation of one float32 forward at batch 1
    max_activation_bytes: int = 4 * 2**30
    #: bytes a measured forward + backward (`analyze --measure`) may be predicted to use
    max_measure_bytes: int = 8 * 2**30

    def raised(self, **changes: int | None) -> Limits:
        """A copy with the given limits changed (None keeps the current value)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


DEFAULT = Limits()

_HOW = {"max_params": "--max-params N (Python: limits=Limits(max_params=N))",
        "max_nodes": "--max-nodes N (Python: limits=Limits(max_nodes=N))",
        "max_activation_bytes": "--max-activation BYTES (Python: limits=Limits(max_activation_bytes=N))"}


@dataclass(frozen=True)
class Estimate:
    """Lower bounds from the spec alone, and where in the spec the largest contribution comes from."""

    params: int
    nodes: int
    activation_bytes: int
    params_at: tuple
    nodes_at: tuple
    activation_at: tuple


def _over(what: str, found: int, limit: int, field: str, exact: bool) -> str:
    bound = "" if exact else "at least "
    return f"the network would have {bound}{found:,} {what}, above the limit of {limit:,}; raise it with {_HOW[field]}"


def check_bounds(spec, limits: Limits | None = None) -> Estimate:
    """Refuse, with a located CompileError, a spec whose arithmetic lower bounds pass a limit (the seed range is the spec's)."""
    limits = limits or DEFAULT
    for n, stage in enumerate(spec.stages):
        check_float(spec, ("stages", n, "step", "T" if stage.step.T is not None else "h"), stage.h, "the step size h")
    e = estimate(spec)
    if e.params > limits.max_params:
        raise spec.error(e.params_at, _over("parameters", e.params, limits.max_params, "max_params", False),
                         CompileError)
    if e.nodes > limits.max_nodes:
        raise spec.error(e.nodes_at, _over("graph nodes", e.nodes, limits.max_nodes, "max_nodes", False),
                         CompileError)
    if e.activation_bytes > limits.max_activation_bytes:
        raise spec.error(e.activation_at, f"one activation would take at least {e.activation_bytes:,} bytes at batch "
                         f"1, above the limit of {limits.max_activation_bytes:,}; raise it with "
                         f"{_HOW['max_activation_bytes']}", CompileError)
    return e


def needs_exact(e: Estimate, limits: Limits | None = None) -> bool:
    """Whether a lower bound is close enough to a limit that only an exact count can decide."""
    limits = limits or DEFAULT
    return e.params * EXACT_MARGIN > limits.max_params or e.nodes * EXACT_MARGIN > limits.max_nodes


def check_exact(spec, limits: Limits | None = None) -> None:
    """Build `spec` on the meta device (no memory) and refuse it if its exact counts pass a limit."""
    from rkcompile.compiler import build

    build(spec, limits=limits, device="meta")


def check_counts(spec, params: int, nodes: int, limits: Limits | None = None) -> None:
    """Compare the exact parameter and node counts of a (meta) build with the limits."""
    limits = limits or DEFAULT
    if params > limits.max_params:
        raise spec.error((), _over("parameters", params, limits.max_params, "max_params", True), CompileError)
    if nodes > limits.max_nodes:
        raise spec.error((), _over("graph nodes", nodes, limits.max_nodes, "max_nodes", True), CompileError)


def check_float(spec, path: tuple, value, what: str) -> None:
    """Refuse a nonzero number that float32 or float64 turns into zero, a subnormal or infinity."""
    if value == 0:
        return
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    tiny32, huge32 = 1.1754943508222875e-38, 3.4028234663852886e38  # float32's smallest normal and largest
    if not math.isfinite(x) or abs(x) < tiny32 or abs(x) > huge32:
        raise spec.error(path, f"{what} {_short(value)} is zero, subnormal or not finite in float32; use a value "
                         "between 1.2e-38 and 3.4e38 in magnitude", CompileError)


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


# ---------------------------------------------------------------- the arithmetic lower bound
def estimate(spec) -> Estimate:
    """Lower bounds on parameters, graph nodes and the largest activation, from the spec's plan (no torch).

    The plan made at validation (`Spec.plan`) holds every part's layers and shapes, F planned once per stage,
    so this costs the size of the spec, not of the network; the parameter rule per primitive layer is
    `_op_parameters` (a registered kind's opaque layers count as 0: the exact meta-device count decides).
    """
    plan = spec.plan
    params = nodes = 0
    biggest = _elements(plan.input)
    params_at: tuple = ("input",)
    nodes_at: tuple = ("input",)
    activation_at: tuple = ("input",)
    top_params = top_nodes = 0
    if plan.stem is not None:
        params, nodes = _part(plan.stem)[:2]
        if _part(plan.stem)[2] > biggest:
            biggest, activation_at = _part(plan.stem)[2], ("stem",)
    for n, (stage, planned) in enumerate(zip(spec.stages, plan.stages)):
        if planned.entry is not None:
            for part in planned.entry.parts.values():
                p, layers, peak = _part(part)
                params, nodes = params + p, nodes + layers
                if peak > biggest:
                    biggest, activation_at = peak, ("stages", n, "entry")
        p_f, layers, peak = _part(planned.function)
        copies = {"per-evaluation": stage.total_evaluations, "shared": 1}.get(stage.weights.kind)
        if copies is None:
            copies = getattr(stage.weights, "size", None) or getattr(stage.weights, "pieces", None) or 1
        stage_params = copies * p_f
        stage_nodes = max(stage.total_evaluations, copies) * max(layers, 1)
        if getattr(stage.weights, "mixes", False):  # a continuous basis: get_attr + mul/add per tensor and term
            stage_nodes *= 1 + 4 * (2 if stage.weights.basis == "linear" else copies)
        params += stage_params
        nodes += stage_nodes
        if stage_params > top_params:
            top_params, params_at = stage_params, _blame(stage, n, copies, p_f, planned.shape.width)
        if stage_nodes > top_nodes:
            top_nodes = stage_nodes
            nodes_at = ("stages", n, "evaluations" if stage.evaluations is not None else "steps")
            if copies > stage.total_evaluations:
                nodes_at = ("stages", n, "weights")
        if peak > biggest:
            biggest, activation_at = peak, ("stages", n)
    if plan.head is not None:
        p, layers, peak = _part(plan.head)
        params, nodes = params + p, nodes + layers
        if p > top_params:
            params_at = ("output", "classes")
        if peak > biggest:
            biggest, activation_at = peak, ("output", "classes")
    return Estimate(params, nodes, biggest * 4, params_at, nodes_at, activation_at)


def _blame(stage, n: int, copies: int, p_f: int, width: int) -> tuple:
    """The field that makes a stage's parameters large: the copies of F, F's own options, or the stage's width."""
    if copies > p_f:
        if stage.weights.kind == "basis":
            return ("stages", n, "weights", "pieces")
        return ("stages", n, "evaluations" if stage.evaluations is not None else "steps")
    # a ResNet F with 3x3 kernels has about 18 width^2 parameters: far more means F's own options (kernel, hidden)
    if stage.width is None or p_f > 32 * width * width:
        return ("stages", n, "module")
    return ("stages", n, "channels" if stage.channels is not None else "features")


def _elements(shape) -> int:
    """Elements of one sample of a state of this shape."""
    return shape.width * shape.height * shape.breadth


def _op_parameters(op) -> int:
    """Parameters of one planned primitive layer (conv, linear, norms); 0 for parameter-free or opaque layers."""
    if op.kind == "conv":
        bias = op.shape.width if op.arg("bias") else 0
        return op.shape_in.width * op.shape.width * op.arg("kernel") ** 2 // op.arg("groups") + bias
    if op.kind == "linear":
        return op.shape_in.width * op.shape.width + (op.shape.width if op.arg("bias") else 0)
    if op.kind in ("batchnorm", "groupnorm", "layernorm"):
        return 2 * op.shape.width
    return 0


def _part(part) -> tuple[int, int, int]:
    """(parameters, layers, largest activation in elements) of one planned part."""
    peak = max([_elements(part.shape_in), *(_elements(op.shape) for op in part.ops)])
    return sum(_op_parameters(op) for op in part.ops), len(part.ops), peak
