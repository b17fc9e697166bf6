"""A custom residual function: any list of layers that maps the state back to its own shape."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from rkcompile.fields import Kind
from rkcompile.functions import ResidualFunction, register_module
from rkcompile.layers import LAYERS, Layer, plan_layers
from rkcompile.shapes import Planner

__all__ = ["Layers"]


@register_module
class Layers(ResidualFunction):
    """A list of layer kinds; a conv or linear without a width maps to the stage's width."""

    kind: Literal["layers"]
    example: ClassVar[dict] = {"kind": "layers", "layers": ["linear", "tanh"]}
    example_state: ClassVar[str] = "vector"
    layers: list[Annotated[Layer, Kind(LAYERS)]] = Field(min_length=1)

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """Plan the layers; an entry's stride goes to the first conv with kernel > 1."""
        plan_layers(self.layers, f, ("layers",), width, stride, residual=True)
