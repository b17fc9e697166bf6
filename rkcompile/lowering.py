"""Integrator lowering: one explicit Runge–Kutta step of any tableau as torch.fx nodes.

    k_i     = F_i(y_n + h * sum_{j<i} a_ij k_j,  t_n + c_i h)
    y_{n+1} = y_n + h * sum_i b_i k_i

Coefficients are Python constants (`torch.add(y, k, alpha=a)` saves nothing for backward), zero
coefficients emit no node, and each b_i k_i is added into the output as soon as k_i exists, so no k_i
outlives its last use (torch.fx frees every value after its last user).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import torch
from torch import fx
from torch.fx.node import Argument

from rkcompile.graphmeta import NodeMeta, Role, put

if TYPE_CHECKING:
    from rkcompile.tableau import Tableau

__all__ = ["StepPlan", "lower_step", "piece_index"]


@dataclass(frozen=True)
class StepPlan:
    """What one integrator step needs: the tableau, the step size h, and F's scale epsilon."""

    tableau: Tableau
    h: Fraction | float
    epsilon: Fraction | float = 1
    learned: bool = False  # h is a parameter multiplied into each k (so coefficients carry a_ij only)


def piece_index(step: int, c: Fraction | float, steps: int, pieces: int) -> int:
    """The basis piece used at time t_n + c h of step n (ContinuousNet, Queiruga et al. 2020).

    Piece min(floor(t/T * M), M-1); but a stage time with c > 0 that lands exactly on a piece boundary
    belongs to the piece on its left (the "open set" rule of ContinuousNet's code), so that all stages
    of a step lying inside one piece use that piece. Exact when c is rational.
    """
    x = (step + c) * Fraction(pieces, steps) if isinstance(c, Fraction) else (step + c) * pieces / steps
    p = math.floor(x)
    if c > 0 and x == p:
        p -= 1
    return min(max(p, 0), pieces - 1)


def lower_step(
    graph: fx.Graph,
    y: fx.Node,
    plan: StepPlan,
    evaluate: Callable[[fx.Node, int], fx.Node],
    name: str,
    meta: NodeMeta,
    scale: Callable[[fx.Node, int], fx.Node] | None = None,
) -> fx.Node:
    """Emit one RK step from state node `y`; `evaluate(z, i)` emits F_i(z) and returns k_i.

    `scale(k, i)`, when given, emits the learned-step (and skip-init) multiplications of k_i.
    Returns the node of y_{n+1}.
    """
    t = plan.tableau
    hk = 1 if plan.learned else plan.h  # a learned h is already inside each scaled k
    ks: dict[int, fx.Node] = {}
    out = y
    for i in range(t.stages):
        z = y
        for j in range(i):
            a = t.A[i][j]
            if a != 0:
                z = _axpy(graph, z, ks[j], hk * plan.epsilon * a, f"{name}_z{i + 1}",
                          meta.but(role=Role.STAGE_INPUT, evaluation=i + 1, source=j + 1, coefficient=hk * a))
        k = evaluate(z, i)
        if scale is not None:
            k = scale(k, i)
        ks[i] = k
        if t.b[i] != 0:
            out = _axpy(graph, out, k, hk * plan.epsilon * t.b[i], f"{name}_y{i + 1}",
                        meta.but(role=Role.OUTPUT, evaluation=i + 1, source=i + 1, coefficient=hk * t.b[i]))
    return out


def _axpy(graph: fx.Graph, x: fx.Node, k: fx.Node, alpha, name: str, meta: NodeMeta) -> fx.Node:
    """x + alpha * k as one node; alpha == 1 is left out of the call for readability."""
    kwargs: dict[str, Argument] = {} if alpha == 1 else {"alpha": float(alpha)}
    node = graph.create_node("call_function", torch.add, (x, k), kwargs, name=name)
    put(node, meta)
    return node
