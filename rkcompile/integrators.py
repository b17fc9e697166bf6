"""Integrator families: how a stage's `integrator` field resolves to a method and how a step of it is lowered.

Two families: "rk" (explicit Runge–Kutta tableaux: a name from the tableau library or an inline tableau) and
"multistep" (linear multistep, LM-ResNet, momentum and second-order schemes; `rkcompile.multistep_family`). A family
resolves a value to a method object with at least `name`, `stages` (evaluations of F per step), `c` (the
evaluation times) and `order`, and lowers one step of it into a torch.fx graph (`lower(graph, y, plan, evaluate,
name, meta, scale)`). A family whose steps carry history (y_{n−1}, f_{n−1}) from block to block gives `start(plan,
compiler, n, stage)` instead, which returns a fresh lowering with the signature of `lower` for each stage; its
methods then describe blocks that differ (start-up steps) by `block_stages(b)`, `block_c(b)`,
`first_evaluation(b)`, `blocks_for(E)`, `evaluations_for(N)` and `budget_error(N, E)` (see `layout` below).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from rkcompile.errors import RkcompileError
from rkcompile.registry import Registry

__all__ = ["FAMILIES", "IntegratorFamily", "resolve_integrator", "lowering", "block_stages", "block_c",
           "first_evaluation", "layout"]


@dataclass(frozen=True)
class IntegratorFamily:
    """A family of integrators: which names it knows, how it resolves a value, how it lowers one step."""

    name: str
    knows: Callable[[object], bool]  # True for the values (names, inline mappings) this family resolves
    resolve: Callable[[object], object]  # value → method (raises RkcompileError on a bad one)
    lower: Callable[..., object]  # (graph, y, plan, evaluate, name, meta, scale) → node of y_{n+1}
    start: Callable[..., Callable] | None = None  # (plan, compiler, n, stage) → a lowering that keeps history
    names: Callable[[], list[str]] | None = None  # the built-in names, quoted when no family knows a name


FAMILIES: Registry[IntegratorFamily] = Registry("integrator family")


def resolve_integrator(value: object) -> tuple[IntegratorFamily, object]:
    """The family and method an `integrator` value stands for; a name no family knows is reported by the first."""
    for _, family in FAMILIES.items():
        if family.knows(value):
            return family, family.resolve(value)
    first = FAMILIES.items()[0][1]
    try:
        return first, first.resolve(value)
    except RkcompileError as e:
        others = [f"{name}: {', '.join(f.names())}" for name, f in FAMILIES.items()[1:] if f.names is not None]
        if not others or not isinstance(value, str):
            raise
        raise type(e)(f"{e}; or a method of another family ({'; '.join(others)})") from None


def _rk_knows(value: object) -> bool:
    from rkcompile.tableaux import list_tableaux

    if isinstance(value, str):
        return value.strip().lower() in list_tableaux()
    return hasattr(value, "to_tableau")


def _rk_resolve(value: object):
    """A tableau name (library) or an InlineTableau → the pruned Tableau (stages never reaching the output dropped)."""
    from rkcompile.tableaux import get_tableau

    tableau = get_tableau(value) if isinstance(value, str) else cast(Any, value).to_tableau()  # an InlineTableau
    return tableau.pruned()


def _rk_lower(*args, **kwargs):
    from rkcompile.lowering import lower_step

    return lower_step(*args, **kwargs)


def lowering(family: IntegratorFamily, plan, compiler, n: int, stage) -> Callable:
    """The step lowering for one stage: the family's stateless `lower`, or a fresh stateful one from `start`."""
    return family.lower if family.start is None else family.start(plan, compiler, n, stage)


def block_stages(method, b: int) -> int:
    """Evaluations of F in block b (the same for every block of an RK method)."""
    hook = getattr(method, "block_stages", None)
    return method.stages if hook is None else hook(b)


def block_c(method, b: int) -> tuple:
    """The evaluation times c_i of block b, in units of h after t_b."""
    hook = getattr(method, "block_c", None)
    return tuple(method.c) if hook is None else hook(b)


def first_evaluation(method, b: int) -> int:
    """Flat index (from 0) of block b's first evaluation in its stage."""
    hook = getattr(method, "first_evaluation", None)
    return b * method.stages if hook is None else hook(b)


def layout(method, blocks: int) -> int | tuple[int, ...]:
    """Evaluations per block: one int when every block has the same, else one per block."""
    if getattr(method, "block_stages", None) is None:
        return method.stages
    sizes = tuple(method.block_stages(b) for b in range(blocks))
    return sizes[0] if len(set(sizes)) == 1 else sizes


FAMILIES.register("rk", IntegratorFamily("rk", _rk_knows, _rk_resolve, _rk_lower))

from rkcompile import multistep_family  # noqa: E402,F401  (registers the "multistep" family)
