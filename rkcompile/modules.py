"""Planned parts (`shapes.PartPlan`) made into torch layers: the only place a plan's primitives meet torch.nn."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from rkcompile.shapes import Op, PartPlan, Shape

__all__ = ["Part", "LayerCall", "Scale", "SqueezeExcitation", "activation", "build_part", "public", "ACTIVATION_FUNCTIONS"]

_PUBLIC: dict[object, object] = {}


def public(function):
    """`function` under its public name, for graph-node targets. torch's C builtins (gelu, softplus, linear) say
    `torch._C._nn` is their module, so fx's generated code would read `torch._C._nn.gelu(x)`; the wrapper says
    `torch.nn.functional`, so `model.code` reads `torch.nn.functional.gelu(x)` — which is the same function.
    Anything else is returned as it is."""
    name = getattr(function, "__name__", "")
    if getattr(function, "__module__", None) != "torch._C._nn" or getattr(nn.functional, name, None) is not function:
        return function
    if function not in _PUBLIC:
        def call(*args, **kwargs):
            return function(*args, **kwargs)

        call.__name__ = call.__qualname__ = name
        call.__module__ = "torch.nn.functional"
        call.__doc__ = function.__doc__
        _PUBLIC[function] = call
    return _PUBLIC[function]


ACTIVATION_FUNCTIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": public(nn.functional.gelu),
    "silu": nn.functional.silu,
    "softplus": public(nn.functional.softplus),
    "elu": nn.functional.elu,
    "leaky-relu": nn.functional.leaky_relu,
}


@dataclass(frozen=True)
class LayerCall:
    """One layer of a part: a submodule (called as a graph node) or a function with extra arguments after x."""

    name: str
    module: nn.Module | None = None
    function: object | None = None
    args: tuple = ()
    label: str | None = None  # the drawing's name for the layer, when not `name`
    inline: bool = False  # the compiler inlines the module's traced forward (`inlining`) instead of calling it
    timed: bool = False  # called as layer(x, t) with the evaluation's time t (`rkcompile.conditioning`)


class Part(nn.Module):
    """A container whose layers run in order; the compiler calls each layer as its own graph node."""

    def __init__(self, calls: list[LayerCall]) -> None:
        super().__init__()
        self.calls = tuple(calls)
        for call in calls:
            if call.module is not None:
                self.add_module(call.name, call.module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eager reference: run the layers in order (the compiled graph inlines the same calls)."""
        for call in self.calls:
            if call.timed:
                raise RuntimeError("a time-conditioned F runs in the compiled graph, which passes it t")
            if call.module is not None:
                x = getattr(self, call.name)(x)
            else:
                assert callable(call.function), "a layer without a module is a function call"
                x = call.function(x, *call.args)
        return x


class Scale(nn.Module):
    """Multiply by a learnable scalar, initialised to `init` (skip-init: F starts as the zero map)."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x times the scalar."""
        return x * self.scale


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) on images (dims 2) or signals (dims 1): a gate per channel."""

    def __init__(self, channels: int, squeeze: int, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.fc1 = conv(channels, squeeze, 1)
        self.fc2 = conv(squeeze, channels, 1)
        self.positions = tuple(range(2, 2 + dims))  # the dims averaged by the squeeze

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x times sigmoid(fc2(relu(fc1(mean of x over positions))))."""
        s = torch.mean(x, self.positions, keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


def activation(kind: str | None) -> Callable[..., torch.Tensor] | None:
    """The function for an activation name, or None for identity/none."""
    return None if kind in (None, "identity", "none") else ACTIVATION_FUNCTIONS[kind]


def build_part(plan: PartPlan) -> Part:
    """Fresh torch layers for a planned part (new parameters each call)."""
    return Part([_call(op) for op in plan.ops])


# Op.arg is untyped (object); each op kind's arguments have the types of the shapes.Planner method that adds it
# (conv, linear, norm, act, dropout, pool, module, function) or of conditioning's time/film ops.
def _int(op: Op, key: str) -> int:
    return cast(int, op.arg(key))


def _bool(op: Op, key: str) -> bool:
    return cast(bool, op.arg(key))


def _str(op: Op, key: str) -> str:
    return cast(str, op.arg(key))


def _call(op: Op) -> LayerCall:
    if op.kind == "act":
        return LayerCall(op.name, function=activation(cast("str | None", op.arg("function"))), label=op.label)
    if op.kind == "function":
        function, args = _FUNCTIONS[_str(op, "function")](op)
        return LayerCall(op.name, function=function, args=args, label=op.label)
    if op.kind in ("time", "film"):
        from rkcompile import time_modules

        if op.kind == "time":
            return LayerCall(op.name, function=time_modules.concat_time, args=(op.arg("dim"),), label=op.label,
                             timed=True)
        module = time_modules.Film(op.shape.width, _int(op, "hidden"), _str(op, "act"), _int(op, "dim"))
        return LayerCall(op.name, module=module, label=op.label, timed=True)
    if op.kind == "module":
        factory = cast("Callable[[Shape, Shape], nn.Module]", op.arg("factory"))  # Planner.module's factory
        return LayerCall(op.name, module=factory(op.shape_in, op.shape), label=op.label,
                         inline=dict(op.args).get("inline", False))
    return LayerCall(op.name, module=_MODULES[op.kind](op), label=op.label)


def _conv(op: Op) -> nn.Module:
    k = _int(op, "kernel")
    cls = nn.Conv1d if op.shape.sequence == "signal" else nn.Conv2d
    return cls(op.shape_in.width, op.shape.width, k, _int(op, "stride"), padding=k // 2, bias=_bool(op, "bias"),
               groups=_int(op, "groups"))


def _pool(op: Op) -> nn.Module:
    signal = op.shape.sequence == "signal"
    cls = {"maxpool": (nn.MaxPool2d, nn.MaxPool1d), "avgpool": (nn.AvgPool2d, nn.AvgPool1d)}[op.kind][signal]
    return cls(_int(op, "kernel"), _int(op, "stride"), padding=_int(op, "kernel") // 2)


def _eps(op: Op) -> dict:
    eps = dict(op.args).get("eps")
    return {} if eps is None else {"eps": eps}


def _layernorm(op: Op) -> nn.Module:
    """LayerNorm over the features of vectors and tokens; over channels and positions (GroupNorm(1)) otherwise."""
    if op.shape.state in ("vector", "tokens"):
        return nn.LayerNorm(op.shape.width, **_eps(op))
    return nn.GroupNorm(1, op.shape.width, **_eps(op))


_MODULES = {
    "conv": _conv,
    "linear": lambda op: nn.Linear(op.shape_in.width, op.shape.width, bias=_bool(op, "bias")),
    "batchnorm": lambda op: (nn.BatchNorm2d if op.shape.image else nn.BatchNorm1d)(op.shape.width, **_eps(op)),
    "groupnorm": lambda op: nn.GroupNorm(_int(op, "groups"), op.shape.width, **_eps(op)),
    "layernorm": _layernorm,
    "rmsnorm": lambda op: nn.RMSNorm(op.shape.width, **_eps(op)),
    "dropout": lambda op: nn.Dropout(cast(float, op.arg("p"))),
    "maxpool": _pool,
    "avgpool": _pool,
}

# parameter-free layers: (function, extra arguments after x)
_FUNCTIONS = {
    "subsample": lambda op: (operator.getitem, ((slice(None), slice(None), slice(None, None, op.arg("stride")),
                                                 slice(None, None, op.arg("stride"))),)),
    "pad-channels": lambda op: (nn.functional.pad, ((0, 0, 0, 0, 0, op.arg("channels")),)),
    "global-avgpool": lambda op: (nn.functional.adaptive_avg_pool2d, (1,)),
    "flatten": lambda op: (torch.flatten, (1,)),
    # sequences: signals N x C x L, tokens N x L x F
    "subsample-1d": lambda op: (operator.getitem, ((slice(None), slice(None), slice(None, None, op.arg("stride"))),)),
    "pad-channels-1d": lambda op: (nn.functional.pad, ((0, 0, 0, op.arg("channels")),)),
    "mean": lambda op: (torch.mean, (op.arg("dim"),)),
    "to-tokens": lambda op: (_sequences().to_tokens, ()),
    "pool-tokens": lambda op: (_sequences().pool_tokens, (op.arg("stride"),)),
    "select": lambda op: (operator.getitem, ((slice(None), op.arg("index")),)),
}


def _sequences():
    from rkcompile import token_modules

    return token_modules
