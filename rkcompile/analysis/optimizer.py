"""The memory a training step needs besides activations: weights, their gradients and the optimizer's state.

Counted as torch's optimizers allocate it (`torch.optim`, single-tensor implementations): plain SGD keeps no
state; SGD with momentum one `momentum_buffer` per parameter; Adam and AdamW `exp_avg` and `exp_avg_sq` per
parameter, each like the parameter, plus a 0-d float32 `step` per parameter tensor. Gradients are one tensor
like each trainable parameter.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["OPTIMIZERS", "Optimizer", "describe", "gradient_bytes", "optimizer_bytes", "check_optimizer"]


class Optimizer:
    """An optimizer's state: tensors like each parameter, and bytes per parameter tensor (Adam's `step`)."""

    def __init__(self, name: str, states: int, per_tensor: int, summary: str) -> None:
        self.name, self.states, self.per_tensor, self.summary = name, states, per_tensor, summary


#: The optimizers `analyze` counts, by the name `--optimizer` takes.
OPTIMIZERS = {o.name: o for o in (
    Optimizer("sgd", 0, 0, "no state"),
    Optimizer("sgd-momentum", 1, 0, "1 momentum buffer per parameter"),
    Optimizer("adam", 2, 4, "2 moments per parameter + a 4-byte step per tensor"),
    Optimizer("adamw", 2, 4, "2 moments per parameter + a 4-byte step per tensor"),
)}


def check_optimizer(name: str) -> Optimizer:
    """The optimizer called `name`, or a one-line error naming the nearest and every valid one."""
    from rkcompile.errors import RkcompileError, did_you_mean

    if name not in OPTIMIZERS:
        raise RkcompileError(f"unknown optimizer '{name}'{did_you_mean(name, list(OPTIMIZERS))}: expected one of "
                             f"{', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def describe(name: str) -> str:
    """'adam: 2 moments per parameter + ...' for a legend."""
    return f"{name}: {OPTIMIZERS[name].summary}" if name in OPTIMIZERS else name


def _trainable(parameters: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    return [p for p in parameters if p.requires_grad and p.is_floating_point()]


def gradient_bytes(parameters: Iterable[torch.Tensor], itemsize: int) -> int:
    """Bytes of the gradients of the trainable parameters, at `itemsize` bytes per element."""
    return sum(p.numel() * itemsize for p in _trainable(parameters))


def optimizer_bytes(parameters: Iterable[torch.Tensor], itemsize: int, name: str) -> int:
    """Bytes of the optimizer's state for the trainable parameters, at `itemsize` bytes per element."""
    o = check_optimizer(name)
    trainable = _trainable(parameters)
    return sum(o.states * p.numel() * itemsize + o.per_tensor for p in trainable)
