"""Pre-norm multi-head self-attention on token sequences: F(y) = MHSA(LN(y)) (Vaswani et al. 2017).

The layers are separate graph nodes (norm, the fused q/k/v projection, the attention core, the output
projection), so analyses see each one; the core calls `torch.nn.functional.scaled_dot_product_attention`,
which picks the fused flash / memory-efficient kernels on GPU.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from rkcompile.fields import PositiveInt
from rkcompile.functions import ResidualFunction, register_module
from rkcompile.shapes import Planner

__all__ = ["Attention", "Attend", "TokenFunction", "attend", "check_heads"]

TokenNorm = Literal["layernorm", "rmsnorm", "none"]


def _register_flops() -> None:
    """FlopCounterMode counts the CUDA fused kernels but not the CPU flash kernel: count it the same way."""
    from torch.utils import flop_counter

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op not in flop_counter.flop_registry and op.default not in flop_counter.flop_registry:
        @flop_counter.register_flop_formula(op)
        def _flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


_register_flops()


class Attend(nn.Module):
    """The parameter-free core of multi-head attention: q, k, v (fused, N x L x 3F) → N x L x F."""

    rk_leaf = True  # one graph node even inside an inlined module: its dropout depends on `training`

    def __init__(self, heads: int, causal: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.causal, self.dropout = heads, causal, dropout

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        """Split the heads, attend with scaled_dot_product_attention, merge the heads."""
        q, k, v = qkv.unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4).unbind(0)
        p = self.dropout if self.training else 0.0
        if q.is_meta and p == 0.0:
            # meta tensors have no kernel choice and take the math path, which saves the L x L attention
            # weights; the real run takes the fused kernel (flash on CPU, flash / memory-efficient on GPU),
            # which saves q, k, v, the output and the log-sum-exp: predict that one
            out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, is_causal=self.causal)[0]
        else:
            out = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        return out.transpose(1, 2).flatten(-2)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, causal={self.causal}, dropout={self.dropout}"


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
    f.module("attend", lambda shape_in, shape: Attend(heads, causal, dropout), replace(f.shape, width=width),
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
