"""The torch modules of the token kinds (imported when a network is built, so `check` and `schema` need no torch)."""

from __future__ import annotations

import torch
from torch import nn

from rkcompile.modules import activation

__all__ = ["Attend", "ParallelCore", "ClassToken", "PositionalEmbedding", "PatchProjection", "to_tokens", "pool_tokens"]


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


class ParallelCore(nn.Module):
    """[q, k, v, h] → [attention(q, k, v), act(h)]: the parameter-free middle of the parallel block."""

    def __init__(self, width: int, hidden: int, heads: int, causal: bool, dropout: float, act: str) -> None:
        super().__init__()
        self.sizes, self.attend, self.act = [3 * width, hidden], Attend(heads, causal, dropout), activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend on the first 3 x width features, activate the others, concatenate."""
        qkv, h = x.split(self.sizes, dim=-1)
        return torch.cat([self.attend(qkv), h if self.act is None else self.act(h)], dim=-1)


class ClassToken(nn.Module):
    """Prepend one learnable token (ViT's class token, Dosovitskiy et al. 2021), initialised to zeros."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[token, x_1, ..., x_L]."""
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionalEmbedding(nn.Module):
    """Add a learned position embedding, one vector per position (normal init, std 0.02 as ViT and GPT-2)."""

    def __init__(self, length: int, features: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, length, features).normal_(std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + the embedding."""
        return x + self.embedding


class PatchProjection(nn.Conv2d):
    """ViT's patch embedding: a patch x patch convolution with stride patch and no padding."""

    def __init__(self, channels: int, features: int, patch: int) -> None:
        super().__init__(channels, features, patch, patch)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """N x F x H x W → N x (H W) x F, patches in row-major order."""
    return x.flatten(2).transpose(1, 2)


def pool_tokens(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Average each run of `stride` neighbouring tokens (the last run may be shorter): N x L x F → N x ceil(L/s) x F."""
    return nn.functional.avg_pool1d(x.transpose(1, 2), stride, stride, ceil_mode=True).transpose(1, 2)
