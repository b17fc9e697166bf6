"""A compiled model's units (stem, entries, blocks, the stage-wide weights, head) with their parameter counts."""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx

from rkcompile import graphmeta, naming
from rkcompile.graphmeta import Role

__all__ = ["Unit", "units", "owned_parameters"]


@dataclass(frozen=True)
class Unit:
    """One row of `rkcompile build`'s table: a block with its evaluations, or a unit owning weights."""

    label: str
    integrator: str
    evaluations: int
    parameters: int


def owned_parameters(model: fx.GraphModule) -> dict[str, list]:
    """{owner unit: [parameter count, the parameters]} by the one ownership rule (`rkcompile.naming`)."""
    owned: dict[str, list] = {}
    for name, p in model.named_parameters():
        entry = owned.setdefault(naming.owner(name), [0, []])
        entry[0] += p.numel()
        entry[1].append(p)
    return owned


def units(model: fx.GraphModule) -> list[Unit]:
    """The model's units in graph order; a stage's shared or basis weights get one row `stage{n}` after its blocks."""
    owned = owned_parameters(model)
    evaluations: dict[str, set[int]] = {}
    for node in model.graph.nodes:
        meta = graphmeta.get(node)
        if meta is None or meta.unit is None:
            continue
        evaluations.setdefault(meta.unit, set())
        if meta.role is Role.EVAL:
            evaluations[meta.unit].add(meta.evaluation)
    rows = []
    for label, evals in evaluations.items():  # dicts keep first-seen (graph) order
        path = naming.parse(label)
        integrator = model.spec.stages[path.stage].tableau.name if path.kind == "block" else "-"
        rows.append(Unit(label, integrator, len(evals), owned.get(label, [0])[0]))
    return _with_stage_rows(rows, owned)


def _with_stage_rows(rows: list[Unit], owned: dict[str, list]) -> list[Unit]:
    """Insert a row for each stage owning weights itself, after the stage's last unit."""
    out: list[Unit] = []
    for k, row in enumerate(rows):
        out.append(row)
        stage = naming.parse(row.label).stage
        following = rows[k + 1] if k + 1 < len(rows) else None
        if stage is not None and (following is None or naming.parse(following.label).stage != stage):
            label = naming.stage(stage)
            if label in owned:
                out.append(Unit(label, "-", 0, owned[label][0]))
    return out
