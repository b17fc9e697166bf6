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
           "check_float", "MAX_SEED"]

#: torch.manual_seed accepts seeds up to 2**64 - 1.
MAX_SEED = 2**64 - 1
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
    """Refuse, with a located CompileError, a spec whose arithmetic lower bounds pass a limit; also value ranges."""
    limits = limits or DEFAULT
    if spec.seed is not None and not 0 <= spec.seed <= MAX_SEED:
        raise spec.error(("seed",), f"seed must be between 0 and 2**64 - 1, found {_short(spec.seed)}", CompileError)
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
    """Lower bounds on parameters, graph nodes and the largest activation, computed from the spec alone."""
    i = spec.input
    image = i.is_image
    width, area = (i.channels, i.height * i.width) if image else (i.features, 1)
    params = nodes = 0
    biggest = width * area
    params_at = nodes_at = activation_at = ("input",)
    top_params = top_nodes = 0
    stem = spec.stem
    if stem is not None:
        if stem.kind == "conv":
            p, layers = width * stem.channels * stem.kernel**2, 3
            width, area = stem.channels, area // (stem.stride**2) or 1
        else:
            p, layers, width, peak = _layers(stem.layers, width, None, area)
            biggest = max(biggest, peak)
        params, nodes = params + p, nodes + layers
        if width * area > biggest:
            biggest, activation_at = width * area, ("stem",)
    for n, stage in enumerate(spec.stages):
        new = stage.width or width
        if stage.entry.kind != "none":
            area = area // (stage.entry.stride**2) or 1
        p_f, layers, peak = _function(stage.module, new, area)
        if stage.entry.kind != "none":
            params += _function(stage.module, min(width, new), area)[0]  # the entry's own F
        width = new
        copies = {"per-evaluation": stage.total_evaluations, "shared": 1}.get(stage.weights.kind, None)
        if copies is None:
            copies = stage.weights.pieces
        stage_params = copies * p_f
        stage_nodes = max(stage.total_evaluations, copies) * layers
        params += stage_params
        nodes += stage_nodes
        if stage_params > top_params:
            top_params, params_at = stage_params, _blame(stage, n, copies, p_f)
        if stage_nodes > top_nodes:
            top_nodes = stage_nodes
            nodes_at = ("stages", n, "evaluations" if stage.evaluations is not None else "steps")
            if copies > stage.total_evaluations:
                nodes_at = ("stages", n, "weights")
        if max(peak, width * area) > biggest:
            biggest, activation_at = max(peak, width * area), ("stages", n)
    if spec.output is not None:
        head = width * spec.output.classes
        params += head
        if head > top_params:
            params_at = ("output", "classes")
        if spec.output.classes > biggest:
            biggest, activation_at = spec.output.classes, ("output", "classes")
    return Estimate(params, nodes, biggest * 4, params_at, nodes_at, activation_at)


def _blame(stage, n: int, copies: int, p_f: int) -> tuple:
    """The field that makes a stage's parameters large: the number of copies of F, or the size of one F."""
    if copies > p_f:
        if stage.weights.kind == "basis":
            return ("stages", n, "weights", "pieces")
        return ("stages", n, "evaluations" if stage.evaluations is not None else "steps")
    m = stage.module
    own = (m.kind == "basic" and m.kernel**2 > (stage.width or 0)) or (
        m.kind == "mlp" and max(m.hidden) > (stage.width or 0)) or m.kind in ("layers", "bottleneck")
    if own or stage.width is None:
        return ("stages", n, "module")
    return ("stages", n, "channels" if stage.channels is not None else "features")


def _function(module, width: int, area: int) -> tuple[int, int, int]:
    """(parameters, layers, largest activation in elements) of one copy of F at this width (lower bounds)."""
    kind = module.kind
    norm = 0 if getattr(module, "norm", "none") in ("none", "layernorm") else 2
    if kind == "basic":
        k = module.kernel
        return 2 * width * width * k * k + 2 * norm * width, 5, width * area
    if kind == "bottleneck":
        mid = module.width or max(width // module.expansion, 1)
        return 2 * width * mid + 9 * mid * mid + norm * (2 * mid + width), 8, max(width, mid) * area
    if kind == "mlp":
        widths = [width, *module.hidden, width]
        p = sum(a * b + (b if module.bias else 0) for a, b in zip(widths, widths[1:]))
        return p, 2 * len(module.hidden) + 1, max(widths) * area
    p, layers, _, peak = _layers(module.layers, width, width, area)
    return p, layers, peak


def _layers(layers: list, width: int, target: int | None, area: int) -> tuple[int, int, int, int]:
    """(parameters, layers, output width, largest activation) of a custom layer list (strides ignored)."""
    params, peak = 0, width * area
    for layer in layers:
        kind = layer.kind
        if kind == "conv":
            out = layer.channels or target or width
            params += width * out * layer.kernel**2 // layer.groups + (out if layer.bias else 0)
            width = out
        elif kind == "linear":
            out = layer.features or target or width
            params += width * out + (out if layer.bias else 0)
            width = out
        elif kind in ("batchnorm", "groupnorm"):
            params += 2 * width
        peak = max(peak, width * area)
    return params, len(layers), width, peak
