"""The parallel transformer block: F(y) = MHSA(LN(y)) + MLP(LN(y)), one F per evaluation.

The two branches share the norm and are computed as in PaLM's parallel layer (Chowdhery et al. 2022): one
input projection to [q, k, v, hidden], a core that attends on the first 3 x width features and applies the
activation to the rest, and one output projection of the concatenation, equal to proj(attention) + fc2(act)
with a single output bias.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Literal

from pydantic import Field

from rkcompile.fields import Activation, PositiveInt
from rkcompile.functions import register_module
from rkcompile.functions.attention import TokenFunction, _modules, check_heads
from rkcompile.shapes import Planner

__all__ = ["Transformer"]


@register_module
class Transformer(TokenFunction):
    """norm → linear (width → 3 width + hidden) → attention and act → linear (width + hidden → width) → dropout."""

    kind: Literal["transformer"]
    example: ClassVar[dict] = {"kind": "transformer", "heads": 2, "ratio": 2}
    heads: PositiveInt
    ratio: PositiveInt = 4
    hidden: PositiveInt | None = None
    act: Activation = "gelu"
    causal: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """The parallel block's four layers, each its own node."""
        self._no_stride(f, stride)
        check_heads(f, width, self.heads)
        hidden = self.hidden or self.ratio * width
        f.norm(self.norm, eps=self.eps, name="ln")
        f.linear(3 * width + hidden, self.bias, name="fc_in")
        f.module("core", lambda shape_in, shape: _modules().ParallelCore(width, hidden, self.heads, self.causal,
                                                               self.attention_dropout, self.act),
                 replace(f.shape, width=width + hidden), label="core", inline=True)
        f.linear(width, self.bias, name="fc_out")
        if self.dropout:
            f.dropout(self.dropout, name="dropout")

    def label(self) -> str:
        """transformer(H heads)."""
        return f"transformer({self.heads})"
