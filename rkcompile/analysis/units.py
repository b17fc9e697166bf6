"""Which unit of the network (stem, a stage's entry, a block, the head) a graph node or a parameter belongs to.

A unit is what the report has one row for. Nodes are placed by their `NodeMeta` record (`rkcompile.graphmeta`);
parameters by the one ownership rule of `rkcompile.naming`: a parameter belongs to the unit whose path it lies
under; shared and basis weights serve many blocks, so they belong to their stage (counted once, in the stage
row, in no block row).
"""

from __future__ import annotations

from torch import fx

from rkcompile import graphmeta, naming

__all__ = ["node_unit", "parameter_owner", "stage_of"]


def node_unit(node: fx.Node) -> str | None:
    """The unit label of a node ("stem", "stage0.entry", "stage0.block3", "head"), None outside any unit."""
    meta = node.meta.get(graphmeta.KEY)
    if not isinstance(meta, graphmeta.NodeMeta) or node.op in ("placeholder", "output"):
        return None
    return meta.unit


def parameter_owner(name: str) -> str | None:
    """The unit (or, for shared or basis weights, the stage) owning the parameter at module path `name`."""
    return naming.owner(name)


def stage_of(unit: str) -> int | None:
    """The stage index in a unit label, None for the stem and head."""
    return naming.parse(unit).stage
