"""Pre-norm multi-head self-attention on token sequences: F(y) = MHSA(LN(y)) (Vaswani et al. 2017).

The layers are separate graph nodes (norm, the fused q/k/v projection, the attention core, the output
projection), so analyses see each one; the core calls `torch.nn.functional.scaled_dot_product_attention`,
which picks the fused flash / memory-efficient kernels on GPU.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Literal

from pydantic import Field

from rkcompile.fields import PositiveInt
from rkcompile.functions import ResidualFunction, register_module
from rkcompile.shapes import Planner

__all__ = ["Attention", "TokenFunction", "attend", "check_heads"]

TokenNorm = Literal["layernorm", "rmsnorm", "none"]


class TokenFunction(ResidualFunction):
    """What token residual functions share: the pre-norm and its eps, biases, and tokens-only states."""

    norm: TokenNorm = "layernorm"
    eps: float | None = Field(None, gt=0)
    bias: bool = True
    state: ClassVar[str] = "tokens"
    state_hint: ClassVar[str] = "needs token states {length, features}; use a 'patch' or 'embedding' stem"
    example_state: ClassVar[str] = "tokens"

    def _no_stride(self, f: Planner, stride: int) -> None:
        if stride > 1:
            raise f.fail(("kind",), f"module '{self.kind}' keeps the sequence length; an entry with stride {stride} "
                         "cannot use it (use 'entry: project')")


def attend(f: Planner, width: int, heads: int, causal: bool, dropout: float) -> None:
    """Plan the attention core on a fused q/k/v state (the caller's `f.linear` made it) returning `width`."""
    f.module("attend", lambda shape_in, shape: _modules().Attend(heads, causal, dropout), replace(f.shape, width=width),
             label=f"attend({heads} heads{', causal' if causal else ''})")


def check_heads(f: Planner, width: int, heads: int) -> None:
    """Heads must divide the width (each head takes width / heads features)."""
    if width % heads:
        divisors = [d for d in range(1, width + 1) if width % d == 0]
        near = min(divisors, key=lambda d: (abs(d - heads), d))
        raise f.fail(("heads",), f"{heads} heads do not divide the width {width} (each head takes width / heads "
                     f"features); nearest valid: {near}")


@register_module
class Attention(TokenFunction):
    """norm → qkv linear (width → 3 width) → attention over `heads` heads → linear (width → width) → dropout."""

    kind: Literal["attention"]
    example: ClassVar[dict] = {"kind": "attention", "heads": 2}
    heads: PositiveInt
    causal: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def states(self) -> tuple[str, ...]:
        """Tokens; a causal one is checked in `plan`, to say that its mask needs an ordered sequence."""
        return () if self.causal else super().states()

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """The attention layers, each its own node."""
        if self.causal and f.shape.state != "tokens":
            raise f.fail(("causal",), f"a causal mask orders the tokens of a sequence; this state is "
                         f"{f.shape.state} {f.shape.show()}, which has no token order")
        self._no_stride(f, stride)
        check_heads(f, width, self.heads)
        f.norm(self.norm, eps=self.eps, name="ln")
        f.linear(3 * width, self.bias, name="qkv")
        attend(f, width, self.heads, self.causal, self.attention_dropout)
        f.linear(width, self.bias, name="proj")
        if self.dropout:
            f.dropout(self.dropout, name="dropout")

    def label(self) -> str:
        """attention(H heads[, causal])."""
        return f"attention({self.heads}{', causal' if self.causal else ''})"


def _modules():
    from rkcompile import token_modules

    return token_modules
