"""Hand-written PyTorch references for the benchmarked specs: what a user would write without rkcompile.

Each class is plain `nn.Module` code with the RK step written out by hand. Submodules are registered in the
order the compiler registers them, so `copy_weights(compiled, hand)` can copy a state dict by position.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import nn

__all__ = ["HOResNet", "ContinuousNet", "ODENet", "copy_weights", "count_parameters"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters())


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy parameters and buffers by position, checking that every shape matches."""
    src, dst = source.state_dict(), target.state_dict()
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} tensors in the source state dict, {len(dst)} in the target")
    for (a, x), (b, y) in zip(src.items(), dst.items()):
        if x.shape != y.shape:
            raise ValueError(f"shape of {a} {tuple(x.shape)} differs from {b} {tuple(y.shape)}")
    target.load_state_dict(dict(zip(dst, src.values())))


def rk4_step(f, y: torch.Tensor, h: float) -> torch.Tensor:
    """One classic RK4 step (Kutta 1901); `f(z, i)` evaluates the i-th residual function."""
    k1 = f(y, 0)
    k2 = f(y + h / 2 * k1, 1)
    k3 = f(y + h / 2 * k2, 2)
    k4 = f(y + h * k3, 3)
    return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def rk4_38_step(f, y: torch.Tensor, h: float) -> torch.Tensor:
    """One RK4 3/8-rule step (Kutta 1901), the scheme torchdiffeq calls `rk4`."""
    k1 = f(y, 0)
    k2 = f(y + h / 3 * k1, 1)
    k3 = f(y + h * (k2 - k1 / 3), 2)
    k4 = f(y + h * (k1 - k2 + k3), 3)
    return y + h / 8 * (k1 + 3 * (k2 + k3) + k4)


class BasicF(nn.Sequential):
    """HO-ResNet's residual function: conv3x3-BN-ReLU-conv3x3-BN, convs without bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)


class HOResNet(nn.Module):
    """HO-ResNet (Luo et al. 2022): stem conv3x3+BN, `evaluations` F's stacked as RK4 blocks with h = 1, pool, linear."""

    def __init__(self, evaluations: int = 28, channels: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.blocks = nn.ModuleList(
            nn.ModuleList(BasicF(channels) for _ in range(4)) for _ in range(evaluations // 4))
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        y = self.stem(x)
        for block in self.blocks:
            y = rk4_step(lambda z, i, block=block: block[i](z), y, 1.0)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


class Unit(nn.Sequential):
    """ContinuousNet's unit: conv3x3(+bias)-ReLU-BN-conv3x3(+bias)-ReLU-BN; the first conv may be strided."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1)
        self.relu1 = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.bn2 = nn.BatchNorm2d(cout)


class Stitch(nn.Module):
    """ContinuousNet's stitch: a unit R plus a bias-free 1x1 (strided) projection, out = proj(x) + R(x)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.residual = Unit(cin, cout, stride)
        self.proj = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """proj(x) + R(x)."""
        return self.proj(x) + self.residual(x)


def basis_piece(step: int, c: Fraction, steps: int, pieces: int) -> int:
    """The piece of theta(t) at t = (step + c) T / steps; a stage on a boundary with c > 0 takes the left piece."""
    x = (step + c) * Fraction(pieces, steps)
    p = math.ceil(x) - 1 if c > 0 else math.floor(x)
    return min(max(p, 0), pieces - 1)


class ODEStage(nn.Module):
    """A ContinuousNet stage: a stitch, then `steps` RK4 steps on [0, 1] of basis weights with `pieces` pieces."""

    C = (Fraction(0), Fraction(1, 2), Fraction(1, 2), Fraction(1))  # classic RK4's stage times

    def __init__(self, cin: int, cout: int, stride: int, steps: int, pieces: int) -> None:
        super().__init__()
        self.stitch = Stitch(cin, cout, stride)
        self.pieces = nn.ModuleList(Unit(cout, cout) for _ in range(pieces))
        self.steps = steps
        self.table = [[basis_piece(n, c, steps, pieces) for c in self.C] for n in range(steps)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Integrate from the stitched input."""
        y = self.stitch(x)
        for n in range(self.steps):
            y = rk4_step(lambda z, i, n=n: self.pieces[self.table[n][i]](z), y, 1.0 / self.steps)
        return y


class ContinuousNet(nn.Module):
    """ContinuousNet (Queiruga et al. 2020), its own layout: stem conv3x3-BN-ReLU, three stitched ODE stages, pool, linear."""

    def __init__(self, widths=(16, 32, 64), steps: int = 8, pieces: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU())
        cins = (widths[0], *widths[:-1])
        self.stages = nn.Sequential(*(ODEStage(cin, cout, 1 if n == 0 else 2, steps, pieces)
                                      for n, (cin, cout) in enumerate(zip(cins, widths))))
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        y = self.stages(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


class ODENet(nn.Module):
    """A fixed-grid Neural ODE: stem conv3x3-BN-ReLU, one shared F integrated with `steps` RK4 3/8 steps on [0, 1].

    `solver="torchdiffeq"` integrates with torchdiffeq's `odeint(method="rk4")` (the 3/8 rule) instead of
    the hand-written loop; keep `steps` a power of two there, so that its float step-size grid has exactly
    `steps` steps.
    """

    def __init__(self, channels: int = 32, steps: int = 8, classes: int = 10, solver: str = "loop") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        self.f = BasicF(channels)
        self.fc = nn.Linear(channels, classes)
        self.steps, self.solver = steps, solver

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        y = self.stem(x)
        if self.solver == "torchdiffeq":
            from torchdiffeq import odeint

            t = torch.tensor([0.0, 1.0], dtype=y.dtype, device=y.device)
            y = odeint(lambda _, z: self.f(z), y, t, method="rk4", options={"step_size": 1.0 / self.steps})[-1]
        else:
            for _ in range(self.steps):
                y = rk4_38_step(lambda z, _: self.f(z), y, 1.0 / self.steps)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))
