"""Weight modes: which F each evaluation of a stage calls (one per evaluation, one shared, or basis pieces).

A weight mode is a spec model with `functions(n, blocks, stages)` (the module paths of the F it creates)
and `select(b, i, blocks, method)` (which of them evaluation i of block b calls). Register it in `WEIGHTS`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from rkcompile import naming
from rkcompile.fields import Model, PositiveInt
from rkcompile.registry import Registry

__all__ = ["WEIGHTS", "WeightMode", "PerEvaluation", "Shared", "Basis", "register_weights"]

WEIGHTS: Registry[type[WeightMode]] = Registry("weight mode")


class WeightMode(Model):
    """Base of weight modes; `per_block` modes give each block its own F (so a block can learn its step)."""

    kind: str
    per_block: ClassVar[bool] = False

    def functions(self, n: int, blocks: int, stages: int) -> list[str]:
        """Module paths (`rkcompile.naming`) of every F the stage owns, in creation order."""
        raise NotImplementedError

    def select(self, b: int, i: int, blocks: int, method) -> int:
        """Index into `functions(...)` of the F that evaluation i (0-based) of block b calls."""
        raise NotImplementedError

    def label(self) -> str:
        """How tables name this mode."""
        return self.kind


register_weights = WEIGHTS.register_kind  # a class decorator: registers a WeightMode subclass under its kind


@register_weights
class PerEvaluation(WeightMode):
    """Every evaluation of F has its own weights (ResNet, HO-ResNet): E x |F| parameters."""

    kind: Literal["per-evaluation"]
    per_block: ClassVar[bool] = True

    def functions(self, n: int, blocks: int, stages: int) -> list[str]:
        """stage{n}.block{b}.eval{i} for every evaluation."""
        return [naming.evaluation(n, b, i + 1) for b in range(blocks) for i in range(stages)]

    def select(self, b: int, i: int, blocks: int, method) -> int:
        """Evaluation i of block b calls its own F."""
        return b * method.stages + i


@register_weights
class Shared(WeightMode):
    """One F for every evaluation (a fixed-grid neural ODE): 1 x |F| parameters."""

    kind: Literal["shared"]

    def functions(self, n: int, blocks: int, stages: int) -> list[str]:
        """The one stage{n}.f."""
        return [naming.shared(n)]

    def select(self, b: int, i: int, blocks: int, method) -> int:
        """Always the shared F."""
        return 0


@register_weights
class Basis(WeightMode):
    """ContinuousNet: theta(t) piecewise constant on M pieces of [0, T]; M x |F| parameters."""

    kind: Literal["basis"]
    example: ClassVar[dict] = {"kind": "basis", "pieces": 2}
    pieces: PositiveInt

    def functions(self, n: int, blocks: int, stages: int) -> list[str]:
        """stage{n}.piece{p} for every piece, sampled or not."""
        return [naming.piece(n, p) for p in range(self.pieces)]

    def select(self, b: int, i: int, blocks: int, method) -> int:
        """The piece holding t_b + c_i h (Queiruga et al. 2020's rule, see `lowering.piece_index`)."""
        from rkcompile.lowering import piece_index

        return piece_index(b, method.c[i], blocks, self.pieces)

    def label(self) -> str:
        """basis(M)."""
        return f"basis({self.pieces})"
