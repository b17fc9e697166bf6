"""Weight modes: which F each evaluation of a stage calls (one per evaluation, one shared, or basis pieces).

A weight mode is a spec model with `functions(n, blocks, stages)` (the module paths of the F it creates)
and `select(b, i, blocks, method)` (which of them evaluation i of block b calls); a mode whose evaluations
combine several F's weights (a continuous basis) overrides `mix`. Register it in `WEIGHTS`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, Strict, model_validator

from rkcompile import naming
from rkcompile.fields import Model, PositiveInt
from rkcompile.registry import Registry

__all__ = ["WEIGHTS", "WeightMode", "PerEvaluation", "Shared", "Basis", "register_weights"]

WEIGHTS: Registry[type[WeightMode]] = Registry("weight mode")


class WeightMode(Model):
    """Base of weight modes; `per_block` modes give each block its own F (so a block can learn its step)."""

    kind: str
    per_block: ClassVar[bool] = False

    def functions(self, n: int, blocks: int, stages: int | tuple[int, ...]) -> list[str]:
        """Module paths (`rkcompile.naming`) of every F the stage owns, in creation order."""
        raise NotImplementedError

    def select(self, b: int, i: int, blocks: int, method) -> int:
        """Index into `functions(...)` of the F that evaluation i (0-based) of block b calls."""
        raise NotImplementedError

    def mix(self, b: int, i: int, blocks: int, method) -> tuple[tuple[int, Fraction | float], ...]:
        """The (index into `functions(...)`, weight) pairs whose weights evaluation i of block b combines,
        weights being Python constants; one pair of weight 1 calls that F as it is."""
        return ((self.select(b, i, blocks, method), 1),)

    @property
    def mixes(self) -> bool:
        """True when evaluations combine weights (`mix`): the compiler then runs F's layers functionally."""
        return False

    def label(self) -> str:
        """How tables name this mode."""
        return self.kind


register_weights = WEIGHTS.register_kind  # a class decorator: registers a WeightMode subclass under its kind


@register_weights
class PerEvaluation(WeightMode):
    """Every evaluation of F has its own weights (ResNet, HO-ResNet): E x |F| parameters."""

    kind: Literal["per-evaluation"]
    per_block: ClassVar[bool] = True

    def functions(self, n: int, blocks: int, stages: int | tuple[int, ...]) -> list[str]:
        """stage{n}.block{b}.eval{i} for every evaluation (`stages`: per block, or one int for all blocks)."""
        sizes = [stages] * blocks if isinstance(stages, int) else list(stages)
        return [naming.evaluation(n, b, i + 1) for b in range(blocks) for i in range(sizes[b])]

    def select(self, b: int, i: int, blocks: int, method) -> int:
        """Evaluation i of block b calls its own F."""
        from rkcompile.integrators import first_evaluation

        return first_evaluation(method, b) + i


@register_weights
class Shared(WeightMode):
    """One F for every evaluation (a fixed-grid neural ODE): 1 x |F| parameters."""

    kind: Literal["shared"]

    def functions(self, n: int, blocks: int, stages: int | tuple[int, ...]) -> list[str]:
        """The one stage{n}.f."""
        return [naming.shared(n)]

    def select(self, b: int, i: int, blocks: int, method) -> int:
        """Always the shared F."""
        return 0


@register_weights
class Basis(WeightMode):
    """ContinuousNet's theta(t) = sum_beta phi_beta(t) theta_beta on [0, T] (Queiruga et al. 2020): `functions`
    picks the basis (`rkcompile.bases`): M constant pieces (the default), M FEM nodes (`linear`), or Legendre
    polynomials of degree d (`legendre`, d + 1 coefficients); parameters are the basis size x |F|."""

    model_config = ConfigDict(serialize_by_alias=True)

    kind: Literal["basis"]
    example: ClassVar[dict] = {"kind": "basis", "pieces": 2}
    basis: str = Field("constant", alias="functions")  # the spec's `functions:` (the method `functions` lists F)
    pieces: PositiveInt | None = None
    degree: Annotated[int, Strict(), Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _size(self) -> Basis:
        from rkcompile.bases import BASES, MAX_DEGREE
        from rkcompile.shapes import PlanError

        if self.basis not in BASES:
            raise PlanError(BASES.unknown(self.basis), ("functions",), compile=False)
        family = BASES.get(self.basis)
        if self.basis == "legendre":
            if self.pieces is not None:
                raise PlanError("a legendre basis is sized by its 'degree' (d + 1 coefficients), not 'pieces'",
                                ("pieces",), compile=False)
            if self.degree is None:
                raise PlanError("a legendre basis needs 'degree' (0 to 16)", (), compile=False)
            if self.degree > MAX_DEGREE:
                raise PlanError(f"degree {self.degree} is out of range: a legendre basis takes 0 to {MAX_DEGREE}",
                                ("degree",), compile=False)
            return self
        if self.degree is not None:
            raise PlanError(f"'degree' sizes a legendre basis; a {self.basis} basis is sized by 'pieces'",
                            ("degree",), compile=False)
        if self.pieces is None:
            raise PlanError(f"a {self.basis} basis needs 'pieces'", (), compile=False)
        if self.pieces < family.minimum:
            raise PlanError(f"a linear basis needs at least {family.minimum} nodes (its hat functions span "
                            f"{family.minimum - 1} element), found pieces: {self.pieces}", ("pieces",), compile=False)
        return self

    @property
    def family(self):
        """The basis family (`rkcompile.bases.Family`)."""
        from rkcompile.bases import BASES

        return BASES.get(self.basis)

    @property
    def size(self) -> int:
        """The number of coefficient tensors theta_beta (pieces, nodes, or degree + 1)."""
        size = self.degree + 1 if self.degree is not None and self.basis == "legendre" else self.pieces
        assert size is not None, "validated: a legendre basis has a degree, the others pieces"
        return size

    def functions(self, n: int, blocks: int, stages: int | tuple[int, ...]) -> list[str]:
        """stage{n}.piece{p} for every coefficient, sampled or not."""
        return [naming.piece(n, p) for p in range(self.size)]

    def select(self, b: int, i: int, blocks: int, method) -> int:
        """The piece holding t_b + c_i h (Queiruga et al. 2020's rule, see `lowering.piece_index`)."""
        from rkcompile.integrators import block_c
        from rkcompile.lowering import piece_index

        return piece_index(b, block_c(method, b)[i], blocks, self.size)

    @property
    def mixes(self) -> bool:
        """A continuous basis combines weights; every evaluation then runs functionally, so that BatchNorm's
        running statistics are only ever updated by `mixing.basis_batch_norm` (never saved for backward)."""
        return self.basis != "constant"

    def mix(self, b: int, i: int, blocks: int, method) -> tuple[tuple[int, Fraction | float], ...]:
        """phi_beta(s) at s = (b + c_i) / blocks for the non-zero basis functions (exact for rational c)."""
        from rkcompile.integrators import block_c

        if self.basis == "constant":
            return ((self.select(b, i, blocks, method), 1),)
        c = block_c(method, b)[i]
        s = Fraction(b + c) / blocks if isinstance(c, (int, Fraction)) else (b + c) / blocks
        return tuple(self.family.values(s, self.size, open_left=c > 0))

    def label(self) -> str:
        """basis(M), basis(linear, M), basis(legendre, d=D)."""
        if self.basis == "constant":
            return f"basis({self.pieces})"
        if self.basis == "legendre":
            return f"basis(legendre, d={self.degree})"
        return f"basis({self.basis}, {self.pieces})"
