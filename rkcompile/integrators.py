"""Integrator families: how a stage's `integrator` field resolves to a method and how a step of it is lowered.

Today there is one family, "rk" (explicit Runge–Kutta tableaux: a name from the tableau library or an inline
tableau); multistep or momentum families register here too. A family resolves a value to a method object
with at least `name`, `stages` (evaluations of F per step), `c` (the evaluation times) and `order`, and lowers
one step of it into a torch.fx graph (`lower(graph, y, plan, evaluate, name, meta, scale)`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rkcompile.registry import Registry

__all__ = ["FAMILIES", "IntegratorFamily", "resolve_integrator"]


@dataclass(frozen=True)
class IntegratorFamily:
    """A family of integrators: which names it knows, how it resolves a value, how it lowers one step."""

    name: str
    knows: Callable[[object], bool]  # True for the values (names, inline mappings) this family resolves
    resolve: Callable[[object], object]  # value → method (raises RkcompileError on a bad one)
    lower: Callable[..., object]  # (graph, y, plan, evaluate, name, meta, scale) → node of y_{n+1}


FAMILIES: Registry[IntegratorFamily] = Registry("integrator family")


def resolve_integrator(value: object) -> tuple[IntegratorFamily, object]:
    """The family and method an `integrator` value stands for; a name no family knows is reported by the first."""
    for _, family in FAMILIES.items():
        if family.knows(value):
            return family, family.resolve(value)
    first = FAMILIES.items()[0][1]
    return first, first.resolve(value)


def _rk_knows(value: object) -> bool:
    from rkcompile.tableaux import list_tableaux

    return not isinstance(value, str) or value.strip().lower() in list_tableaux()


def _rk_resolve(value: object):
    """A tableau name (library) or an InlineTableau → the pruned Tableau (stages never reaching the output dropped)."""
    from rkcompile.tableaux import get_tableau

    tableau = get_tableau(value) if isinstance(value, str) else value.to_tableau()
    return tableau.pruned()


def _rk_lower(*args, **kwargs):
    from rkcompile.lowering import lower_step

    return lower_step(*args, **kwargs)


FAMILIES.register("rk", IntegratorFamily("rk", _rk_knows, _rk_resolve, _rk_lower))
