"""Which unit of the network (stem, a stage's entry, a block, the head) a graph node or a parameter belongs to.

A unit is what the report has one row for. Nodes are placed by their `node.meta["rk"]` record; parameters
by their module path, which the compiler writes as `stem.*`, `stage{n}.entry.*`, `stage{n}.block{b}.*`
(per-evaluation weights, learned step sizes), `stage{n}.f.*` (shared) or `stage{n}.piece{p}.*` (basis),
and `head.*`. Ownership rule: a parameter belongs to the unit whose path it lies under; shared and basis
weights serve many blocks, so they belong to their stage (counted once, in the stage row, in no block row).
"""

from __future__ import annotations

import re

from torch import fx

__all__ = ["node_unit", "parameter_owner", "stage_of", "units_in_order"]

_STAGE = re.compile(r"stage(\d+)")
_BLOCK = re.compile(r"block\d+")


def node_unit(node: fx.Node) -> str | None:
    """The unit label of a node ("stem", "stage0.entry", "stage0.block3", "head"), None outside any unit."""
    rk = node.meta.get("rk") or {}
    role = rk.get("role")
    if node.op in ("placeholder", "output") or role in (None, "input"):
        return None
    if role in ("stem", "head"):
        return role
    stage, block = rk.get("stage"), rk.get("block")
    if block == "entry":
        return f"stage{stage}.entry"
    if isinstance(block, int):
        return f"stage{stage}.block{block}"
    return f"stage{stage}" if stage is not None else None


def parameter_owner(name: str) -> str | None:
    """The unit (or, for shared or basis weights, the stage) owning the parameter at module path `name`."""
    parts = name.split(".")
    if parts[0] in ("stem", "head"):
        return parts[0]
    match = _STAGE.fullmatch(parts[0])
    if match is None:
        return None
    if len(parts) > 2 and (parts[1] == "entry" or _BLOCK.fullmatch(parts[1])):
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def units_in_order(graph: fx.Graph) -> list[str]:
    """Unit labels in the order their first node runs."""
    seen: dict[str, None] = {}
    for node in graph.nodes:
        unit = node_unit(node)
        if unit is not None:
            seen.setdefault(unit, None)
    return list(seen)


def stage_of(unit: str) -> int | None:
    """The stage index in a unit label, None for the stem and head."""
    match = _STAGE.match(unit)
    return int(match.group(1)) if match else None
