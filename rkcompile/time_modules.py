"""The torch side of time-conditioned F (`rkcompile.conditioning`): t appended as a channel, and FiLM from t.

The compiler passes t as a Python constant (the evaluation's time, the one its node metadata and the drawings
carry), so neither layer fixes a device or dtype, and nothing but F's own weights is a parameter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rkcompile.modules import activation

__all__ = ["concat_time", "film", "Film"]


def concat_time(x: torch.Tensor, t: float, dim: int) -> torch.Tensor:
    """x with one more channel (dim 1) or feature (dim -1) filled with t (torchdiffeq's ConcatConv2d input)."""
    shape = list(x.shape)
    shape[dim] = 1
    return torch.cat([x, x.new_full(shape, t)], dim)


def film(x: torch.Tensor, t: float, weight1, bias1, weight2, bias2, act: str, dim: int) -> torch.Tensor:
    """FiLM from t on given weights (the functional form `Film` and a continuous basis' combined weights use)."""
    h = F.linear(x.new_full((1, 1), t), weight1, bias1)
    fn = activation(act)
    if callable(fn):
        h = fn(h)
    gamma, beta = F.linear(h, weight2, bias2).chunk(2, dim=-1)
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    return x * (1 + gamma.reshape(shape)) + beta.reshape(shape)


class Film(nn.Module):
    """x·(1 + γ(t)) + β(t) per channel, (γ, β) = Linear(hidden, 2·width)(act(Linear(1, hidden)(t)))
    (Perez et al. 2018 (FiLM)); the second layer starts at zero, so the modulation starts as the identity.
    Parameters are flat (weight1, bias1, weight2, bias2) so that a continuous basis can combine them."""

    def __init__(self, width: int, hidden: int, act: str, dim: int) -> None:
        super().__init__()
        self.width, self.dim, self.act = width, dim, act
        self.weight1 = nn.Parameter(torch.empty(hidden, 1).uniform_(-1, 1))  # nn.Linear's bound 1/sqrt(fan_in 1)
        self.bias1 = nn.Parameter(torch.empty(hidden).uniform_(-1, 1))
        self.weight2 = nn.Parameter(torch.zeros(2 * width, hidden))
        self.bias2 = nn.Parameter(torch.zeros(2 * width))

    def forward(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Modulate x by the scale and shift the map gives at time t."""
        return film(x, t, self.weight1, self.bias1, self.weight2, self.bias2, self.act, self.dim)

    def extra_repr(self) -> str:
        return (f"width={self.width}, hidden={self.weight1.shape[0]}, act={self.act}, "
                f"dim={self.dim}")

