"""A multilayer perceptron on vector states (the ODE-Net F of Queiruga et al. 2020's pendulum)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rkcompile.fields import Activation, PositiveInt
from rkcompile.functions import ResidualFunction, register_module
from rkcompile.shapes import Planner

__all__ = ["Mlp"]


@register_module
class Mlp(ResidualFunction):
    """linear → act for each hidden width, then linear back to the state's width."""

    kind: Literal["mlp"]
    example: ClassVar[dict] = {"kind": "mlp", "hidden": [5]}
    hidden: list[PositiveInt] = Field(min_length=1)
    act: Activation = "tanh"
    bias: bool = True
    state: ClassVar[str | None] = "vector"
    state_hint: ClassVar[str] = "needs vector states; use 'basic' for images"

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """Linear layers through the hidden widths to `width`."""
        for features in self.hidden:
            f.linear(features, self.bias)
            f.act(self.act)
        f.linear(width, self.bias)
