"""A demo rkcompile plugin: a residual-function kind and a named tableau, registered by `register()`."""

from __future__ import annotations

from typing import ClassVar, Literal


def register() -> None:
    """The entry point: register the kinds through rkcompile's public API (imports happen here, lazily)."""
    import torch
    from torch import nn

    import rkcompile

    class Gate(nn.Module):
        """x * sigmoid(g), one learnable g per feature."""

        def __init__(self, features: int) -> None:
            super().__init__()
            self.g = nn.Parameter(torch.zeros(features))

        def forward(self, x):
            return x * torch.sigmoid(self.g)

    class GatedLinear(rkcompile.ResidualFunction):
        """F(y) = gate(tanh(W y + b)) on vectors: width^2 + 2 width parameters."""

        kind: Literal["gated-linear"]
        state: ClassVar[str] = "vector"

        def plan(self, f, width, stride):
            f.linear(width)
            f.act("tanh")
            f.module("gate", lambda shape_in, shape: Gate(shape.width), f.shape)

    rkcompile.register_module(GatedLinear)
    # Ralston (1962)'s third-order method: c = (0, 1/2, 3/4), b = (2/9, 1/3, 4/9)
    rkcompile.register_tableau(rkcompile.Tableau.from_text(
        "ralston3", ["0", "1/2", "3/4"], [[], ["1/2"], ["0", "3/4"]], ["2/9", "1/3", "4/9"],
        source="Ralston (1962)"))
