"""Valid specs that probably do not do what their author meant: each a located one-line `RkcompileWarning`.

A spec can be valid and still waste weights or lose accuracy silently: basis pieces that no evaluation samples
(no gradient ever reaches them), RK steps that straddle a boundary of a piecewise theta(t) (the step's order
drops to one; Queiruga et al. 2020), `epsilon: 0` (F multiplied by zero), and one shared F with batch norm (one
set of running statistics for every time t). `warn(spec)` issues them as Python warnings; the CLI (and
examples/train.py) print each as one `warning: FILE:LINE:COL: path: ...` line (`one_line_warnings`).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from fractions import Fraction

from rkcompile.errors import RkcompileWarning

__all__ = ["cautions", "warn", "one_line_warnings", "unused_functions", "straddled_boundaries"]

#: What a basis calls its coefficient tensors, for messages.
_UNITS = {"constant": "pieces", "linear": "nodes", "legendre": "coefficients"}
#: Longest list of indices a message spells out.
_SHOWN = 12


def warn(spec, what: str | None = None) -> None:
    """Issue every caution for `spec` as an `RkcompileWarning`: located in its file (or at the `--set` that caused
    it), or, for a model a transformation `what` made, as `what: path: message`."""
    for message in cautions(spec, what):
        warnings.warn(message, RkcompileWarning, stacklevel=3)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Inside: every RkcompileWarning is one `warning: ...` line on stderr, each time; others print as Python's."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", RkcompileWarning)
        warnings.showwarning = _show_warning
        yield


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, RkcompileWarning):
        print(f"warning: {message}", file=sys.stderr, flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def cautions(spec, what: str | None = None) -> list[str]:
    """The one-line cautions for a validated spec, in stage order (located, or prefixed by `what`)."""
    from rkcompile.source import format_path

    out = []
    for n, stage in enumerate(spec.stages):
        for path, message in _stage_cautions(spec, n, stage):
            out.append(f"{what}: {format_path(path)}: {message}" if what else str(spec.error(path, message)))
    return out


def _stage_cautions(spec, n: int, stage) -> list[tuple[tuple, str]]:
    """(path, message) pairs for one stage."""
    found: list[tuple[tuple, str]] = []
    where = ("stages", n)
    weights = stage.weights
    if weights.kind == "basis":
        unit = _UNITS.get(weights.basis, "pieces")
        unused = unused_functions(stage)
        if unused:
            steps = f"{stage.blocks} step{'s' if stage.blocks > 1 else ''} of {stage.tableau.name}"
            one = len(unused) == 1
            found.append((where + ("weights",),
                          f"{unit[:-1] if one else unit} {_indices(unused)} of {weights.size} "
                          f"{'is' if one else 'are'} never evaluated ({steps}): {'its' if one else 'their'} weights "
                          f"get no gradient (DistributedDataParallel then needs find_unused_parameters=True); use "
                          f"more steps or fewer {unit}"))
        inside = straddled_boundaries(stage)
        if inside:
            constant = weights.basis == "constant"
            cells = weights.size if constant else weights.size - 1
            why = ("theta(t) jumps there, and a step across a jump integrates at first order" if constant else
                   "theta(t) has a kink there, and a step across a kink loses the integrator's order")
            which = (f"the boundary between the 2 {'pieces' if constant else 'elements'} of theta(t) lies" if cells == 2
                     else f"{len(inside)} of the {cells - 1} boundaries between the {cells} "
                          f"{'pieces' if constant else 'elements'} of theta(t) {'lies' if len(inside) == 1 else 'lie'}")
            found.append((where + ("weights",),
                          f"{which} inside a step ({stage.blocks} "
                          f"step{'s' if stage.blocks > 1 else ''} of {stage.tableau.name}): {why}; use a multiple "
                          f"of {cells} steps"))
    if stage.step.epsilon.value == 0:
        found.append((where + ("step", "epsilon"),
                      "epsilon 0 multiplies every evaluation of F by zero: the stage is the identity and its F's "
                      "weights get no gradient"))
    entry_eps = getattr(stage.entry, "epsilon", None)
    if entry_eps is not None and entry_eps.value == 0:
        found.append((where + ("entry", "epsilon"),
                      f"epsilon 0 drops the {stage.entry.kind}'s R(x): only its shortcut remains, and R's weights get "
                      "no gradient"))
    if weights.kind == "shared" and _has_batch_norm(spec, n):
        found.append((where + ("weights",),
                      f"one shared F with batchnorm keeps one set of running statistics for all "
                      f"{stage.total_evaluations} evaluations, at different times t: in eval mode each is normalised "
                      "by statistics mixed over times; use basis or per-evaluation weights (a BatchNorm each), or a "
                      "groupnorm/layernorm"))
    return found


def unused_functions(stage) -> list[int]:
    """Indices of a basis stage's coefficient tensors that no evaluation's weights combine (0-based)."""
    weights, method = stage.weights, stage.tableau
    if weights.kind != "basis":
        return []
    from rkcompile.integrators import block_c

    left = set(range(weights.size))
    for b in range(stage.blocks):
        for i in range(len(block_c(method, b))):
            left.difference_update(beta for beta, phi in weights.mix(b, i, stage.blocks, method) if phi != 0)
        if not left:
            break
    return sorted(left)


def straddled_boundaries(stage) -> list[Fraction]:
    """The breakpoints of a basis stage's theta(t) (in units of its interval) that lie strictly inside an RK step.

    Only Runge–Kutta stages: a multistep step evaluates F once, at its start, and its history crosses every
    boundary whatever the alignment. A legendre theta(t) is one polynomial, with no breakpoints.
    """
    from rkcompile.tableau import Tableau

    weights = stage.weights
    if weights.kind != "basis" or not isinstance(stage.tableau, Tableau) or stage.tableau.stages == 1 \
            and stage.tableau.c[0] == 0:
        return []  # Euler samples only the start of each step: no step sees two pieces
    breaks = weights.family.cells(weights.size)[1:-1]
    return [x for x in breaks if (x * stage.blocks).denominator != 1]


def _has_batch_norm(spec, n: int) -> bool:
    """True when the stage's planned F has a batchnorm layer."""
    plan = spec.plan.stages[n]
    return any(op.kind == "batchnorm" for function in (plan.functions or (plan.function,)) for op in function.ops)


def _indices(values: list[int]) -> str:
    """'1, 2, 3' or '1, 2, ... (40 in all)'."""
    if len(values) <= _SHOWN:
        return ", ".join(map(str, values))
    return ", ".join(map(str, values[:_SHOWN])) + f", ... ({len(values)} in all)"
