"""A compiled model's units (stem, entries, blocks, shared or basis weights, head) with their parameter counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import fx

__all__ = ["Unit", "units"]

_OWNER = re.compile(r"^(stem|head|stage\d+\.(?:entry|block\d+|f|piece\d+))(?:\.|$)")


@dataclass(frozen=True)
class Unit:
    """One row of `rkcompile build`'s table: a block with its evaluations, or a unit owning weights."""

    label: str
    integrator: str
    evaluations: int
    parameters: int


def units(model: fx.GraphModule) -> list[Unit]:
    """The model's units in graph order; shared (`stageN.f`) and basis (`stageN.pieceP`) weights get rows of their own."""
    from rkcompile.checkpointing import plain_model

    model = plain_model(model)  # checkpointed groups are one node each: read the blocks from the plain graph
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        label = _OWNER.match(name).group(1)
        counts[label] = counts.get(label, 0) + p.numel()
    evaluations: dict[str, set[int]] = {}
    for node in model.graph.nodes:
        meta = node.meta.get("rk", {})
        if meta.get("role") == "eval":
            evaluations.setdefault(f"stage{meta['stage']}.block{meta['block']}", set()).add(meta["eval"])
        if node.op in ("call_module", "get_attr"):
            evaluations.setdefault(_OWNER.match(node.target).group(1), set())
    rows = []
    for label, evals in evaluations.items():  # dicts keep first-seen (graph) order
        stage = re.match(r"stage(\d+)\.block", label)
        integrator = model.spec.stages[int(stage.group(1))].tableau.name if stage else "-"
        rows.append(Unit(label, integrator, len(evals), counts.get(label, 0)))
    return rows
