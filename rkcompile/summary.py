"""A compiled model's units (stem, entries, blocks, the stage-wide weights, head) with their parameter counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from torch import fx

from rkcompile import graphmeta, naming
from rkcompile.graphmeta import Role

if TYPE_CHECKING:
    from rkcompile.spec import Spec

__all__ = ["Unit", "units", "owned_parameters", "network_order"]


@dataclass(frozen=True)
class Unit:
    """One row of `rkcompile build`'s table: a block with its evaluations, or a unit owning weights."""

    label: str
    integrator: str
    evaluations: int
    parameters: int
    #: parameters that are not F's, by what they are: "h" (learned steps), "controller", "skip_init", "k"/"gamma"
    extras: tuple[tuple[str, int], ...] = ()


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
    from rkcompile.checkpointing import plain_model

    model = plain_model(model)  # checkpointed groups are one node each: read the blocks from the plain graph
    owned = owned_parameters(model)
    evaluations: dict[str, set[int]] = {}
    for node in model.graph.nodes:
        meta = graphmeta.get(node)
        if meta is None or meta.unit is None:
            continue
        evaluations.setdefault(meta.unit, set())
        if meta.role is Role.EVAL:
            assert meta.evaluation is not None, "the compiler gives every evaluation node its index"
            evaluations[meta.unit].add(meta.evaluation)
    extras = _extras(model)
    rows = []
    for label in sorted(evaluations, key=network_order):  # network order, whatever order the graph uses them in
        path = naming.parse(label)
        if path.kind == "block":
            assert path.stage is not None, "a block's label names its stage"
            # the compiler sets .spec; fx types module attributes as Tensor | Module
            integrator = cast("Spec", model.spec).stages[path.stage].tableau.name
        else:
            integrator = "-"
        rows.append(Unit(label, integrator, len(evaluations[label]), owned.get(label, [0])[0],
                         tuple(sorted(extras.get(label, {}).items()))))
    return _with_stage_rows(rows, owned, extras)


def network_order(label: str) -> tuple:
    """A sort key putting unit labels in network order: stem, each stage's entry, blocks and own row, head."""
    path = naming.parse(label)
    if path.stage is None:
        return (0,) if path.kind == naming.STEM else (2,)
    rank = {"entry": (0, 0), "block": (1, path.block)}.get(path.kind, (2, 0))
    return (1, path.stage, *rank)


def _extras(model: fx.GraphModule) -> dict[str, dict[str, int]]:
    """{owner unit: {kind: count}} for the parameters that are not F's weights (read from their module paths)."""
    out: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        path = naming.parse(name)
        words = path.rest.split(".") if path.rest else []
        if path.kind == "controller":
            kind = "controller"
        elif words[-2:] == ["skip", "scale"]:
            kind = "skip_init"
        elif path.kind == "block" and words in (["h"], ["k"], ["gamma"]):
            kind = words[0]
        else:
            continue
        counts = out.setdefault(path.owner, {})
        counts[kind] = counts.get(kind, 0) + p.numel()
    return out


def _with_stage_rows(rows: list[Unit], owned: dict[str, list], extras: dict[str, dict[str, int]]) -> list[Unit]:
    """Insert a row for each stage owning weights itself, after the stage's last unit."""
    out: list[Unit] = []
    for k, row in enumerate(rows):
        out.append(row)
        stage = naming.parse(row.label).stage
        following = rows[k + 1] if k + 1 < len(rows) else None
        if stage is not None and (following is None or naming.parse(following.label).stage != stage):
            label = naming.stage(stage)
            if label in owned:
                out.append(Unit(label, "-", 0, owned[label][0], tuple(sorted(extras.get(label, {}).items()))))
    return out
