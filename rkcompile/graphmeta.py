"""The typed record every compiled graph node carries in `node.meta["rk"]`: what the node is in the network.

Written by the producers (compiler, lowering, controllers), read by every consumer (analysis, render, summary,
transforms), so no one reconstructs roles from target strings. `node.meta["tensor_meta"]`, the standard torch.fx
shape record, is written by the analysis' meta-tensor propagation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from fractions import Fraction
from functools import cached_property

from rkcompile import naming

__all__ = ["KEY", "Role", "Part", "NodeMeta", "get", "put"]

KEY = "rk"


class Role(str, Enum):
    """What a node does in its unit."""

    INPUT = "input"  # the network input
    STEM = "stem"
    HEAD = "head"
    ENTRY = "entry"  # a layer of a stage's entry (its F or its shortcut: see `part`)
    EVAL = "eval"  # a layer of F in evaluation k_i of a step
    STAGE_INPUT = "stage-input"  # z_i += a_ij h k_j
    OUTPUT = "output"  # y += b_i h k_i in a step; the residual sum of an entry
    AFTER = "after"  # the activation after a residual sum
    SCALE = "scale"  # k_i times the learned step size
    PARAMETER = "parameter"  # a get_attr of a block's own tensor (its h)
    CONTROLLER = "controller"  # a step-size controller's nodes (Yang et al. 2020)
    HISTORY = "history"  # a multistep step adds a carried term: α_j y_{n−j} or β_j h f_{n−j}
    REGISTER = "register"  # an axpy of the minimal-register lowering (`rkcompile.lowering_registers`)
    CHECKPOINT = "checkpoint"  # a checkpointed group of blocks, outlined (`rkcompile.checkpointing`)
    REVERSIBLE = "reversible"  # a stage's blocks run with reversible backprop, outlined (`rkcompile.reversible`)


class Part(str, Enum):
    """Which part of an entry a node belongs to."""

    F = "f"
    SHORTCUT = "shortcut"


@dataclass(frozen=True)
class NodeMeta:
    """One node's place in the network: its unit (stage, block or entry), evaluation, coefficient and layer."""

    role: Role
    stage: int | None = None
    block: int | None = None  # the step index inside the stage; None outside steps
    entry: bool = False  # the node belongs to the stage's entry (transition or stitch)
    evaluation: int | None = None  # i of k_i, from 1
    piece: int | None = None  # the basis piece evaluated (basis weights)
    part: Part | None = None  # inside an entry: its F or its shortcut
    coefficient: Fraction | float | None = None  # a_ij h or b_i h of a stage-input/output node
    source: int | None = None  # j of the k_j a stage-input/output node adds
    time: Fraction | float | None = None  # t_n + c_i h of an evaluation
    weights: str | None = None  # module path of the F an evaluation runs (its weights' owner path)
    layer: str | None = None  # the layer's short name (conv1, bn1, ...)
    # the output node of a minimal-register step: the tableau's edges (j, i, a_ij h) and (i, b_i h), which its
    # axpys do not show one by one
    into: tuple | None = None
    out: tuple | None = None
    mix: tuple[tuple[str, Fraction | float], ...] | None = None  # a continuous basis: (weights path, phi_beta(t))
    history: str | None = None  # the carried term a history node adds ("y_{n−1}", "f_{n−2}", "y_n")
    learned: str | None = None  # the learnable per-step coefficient multiplying it ("k", "gamma")
    skip: Fraction | float | None = None  # y_n's coefficient in y_{n+1} when it is not 1 (leapfrog: 0)
    startup: str | None = None  # the RK method of a multistep stage's start-up step
    opaque: bool = False  # a module that could not be inlined (`inlining`): its temporaries are hidden

    @cached_property
    def unit(self) -> str | None:
        """The unit label ("stem", "stage0.entry", "stage0.block3", "head"); None for the input."""
        if self.role in (Role.STEM, Role.HEAD):
            return self.role.value
        if self.stage is None:
            return None
        if self.entry:
            return naming.entry(self.stage)
        if self.block is not None:
            return naming.block(self.stage, self.block)
        return naming.stage(self.stage)

    def but(self, **changes) -> NodeMeta:
        """A copy with some fields changed (`dataclasses.replace` without re-running __init__: builds call it per node)."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"NodeMeta has no field {sorted(unknown)[0]!r}")
        copy = object.__new__(NodeMeta)
        copy.__dict__.update({name: value for name, value in self.__dict__.items() if name in _FIELDS}, **changes)
        return copy


_FIELDS = frozenset(f.name for f in fields(NodeMeta))


def get(node) -> NodeMeta | None:
    """The node's record, None for nodes rkcompile did not create."""
    meta = node.meta.get(KEY)
    return meta if isinstance(meta, NodeMeta) else None


def put(node, meta: NodeMeta) -> None:
    """Attach `meta` to `node`."""
    node.meta[KEY] = meta
