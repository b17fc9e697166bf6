"""The position-wise feed-forward network of a transformer on token sequences: F(y) = MLP(LN(y))."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rkcompile.fields import Activation, PositiveInt
from rkcompile.functions import register_module
from rkcompile.functions.attention import TokenFunction
from rkcompile.shapes import Planner

__all__ = ["Ffn"]


@register_module
class Ffn(TokenFunction):
    """norm → linear (width → hidden) → act → dropout → linear (hidden → width) → dropout; hidden = ratio x width."""

    kind: Literal["ffn"]
    example: ClassVar[dict] = {"kind": "ffn", "ratio": 2}
    ratio: PositiveInt = 4
    hidden: PositiveInt | None = None
    act: Activation = "gelu"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """The MLP layers, each its own node (named as torchvision's MLP: fc1, gelu, fc2)."""
        self._no_stride(f, stride)
        f.norm(self.norm, eps=self.eps, name="ln")
        f.linear(self.hidden or self.ratio * width, self.bias, name="fc1")
        f.act(self.act)
        if self.dropout:
            f.dropout(self.dropout, name="dropout1")
        f.linear(width, self.bias, name="fc2")
        if self.dropout:
            f.dropout(self.dropout, name="dropout2")

    def label(self) -> str:
        """ffn(hidden)."""
        return f"ffn(x{self.ratio})" if self.hidden is None else f"ffn({self.hidden})"
