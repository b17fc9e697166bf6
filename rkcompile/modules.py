"""The residual function F and the other network parts, as ordered lists of named torch layers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from rkcompile.semantics import Shape
from rkcompile.spec import Act, Basic, Bottleneck, Conv, Dropout, Layers, Linear, Mlp, Norm, Pool

__all__ = ["Part", "LayerCall", "Scale", "residual_function", "layer_list", "activation", "norm_layer"]

ACTIVATION_FUNCTIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
    "softplus": nn.functional.softplus,
    "elu": nn.functional.elu,
    "leaky-relu": nn.functional.leaky_relu,
}


@dataclass(frozen=True)
class LayerCall:
    """One layer of a part: a submodule (called as a graph node) or a parameter-free function."""

    name: str
    module: nn.Module | None = None
    function: object | None = None


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
            x = (getattr(self, call.name) if call.module is not None else call.function)(x)
        return x


class Scale(nn.Module):
    """Multiply by a learnable scalar, initialised to `init` (skip-init: F starts as the zero map)."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x times the scalar."""
        return x * self.scale


def activation(kind: str | None) -> object | None:
    """The function for an activation name, or None for identity/none."""
    return None if kind in (None, "identity", "none") else ACTIVATION_FUNCTIONS[kind]


def norm_layer(kind: str, shape: Shape, groups: int = 32) -> nn.Module | None:
    """A normalisation layer over the current width (BatchNorm2d/1d, GroupNorm, LayerNorm) or None."""
    if kind == "batchnorm":
        return nn.BatchNorm2d(shape.width) if shape.image else nn.BatchNorm1d(shape.width)
    if kind == "groupnorm":  # a module's groupnorm takes gcd(32, width) groups, so any width works
        return nn.GroupNorm(math.gcd(groups, shape.width), shape.width)
    if kind == "layernorm":
        return nn.GroupNorm(1, shape.width) if shape.image else nn.LayerNorm(shape.width)
    return None


SHORT_NAMES = {"batchnorm": "bn", "groupnorm": "gn", "layernorm": "ln", "linear": "fc"}


class _Builder:
    """Accumulates named layer calls, numbering each kind (conv1, bn1, relu1, conv2, ...)."""

    def __init__(self) -> None:
        self.calls: list[LayerCall] = []
        self.counts: dict[str, int] = {}

    def _name(self, kind: str) -> str:
        short = SHORT_NAMES.get(kind, kind.replace("-", "_"))
        self.counts[short] = self.counts.get(short, 0) + 1
        return f"{short}{self.counts[short]}"

    def module(self, kind: str, module: nn.Module | None) -> None:
        """Append a layer module (skipped when None, e.g. norm: none)."""
        if module is not None:
            self.calls.append(LayerCall(self._name(kind), module=module))

    def act(self, kind: str | None) -> None:
        """Append an activation function (skipped for identity)."""
        fn = activation(kind)
        if fn is not None:
            self.calls.append(LayerCall(self._name(kind), function=fn))

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = False, groups: int = 1) -> None:
        """Append a 'same'-padded 2-d convolution."""
        self.module("conv", nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=bias, groups=groups))


def residual_function(module, shape_in: Shape, width_out: int, stride: int = 1) -> Part:
    """Build F for a module spec, mapping `shape_in` to `width_out` channels/features at `stride`."""
    b = _Builder()
    cin, cout = shape_in.width, width_out
    if isinstance(module, Basic):
        k, out = module.kernel, Shape(shape_in.image, cout)
        if module.form == "post":
            b.conv(cin, cout, k, stride, module.bias)
            b.module(module.norm, norm_layer(module.norm, out))
            b.act(module.act)
            b.conv(cout, cout, k, 1, module.bias)
            b.module(module.norm, norm_layer(module.norm, out))
        else:
            b.module(module.norm, norm_layer(module.norm, shape_in))
            b.act(module.act)
            b.conv(cin, cout, k, stride, module.bias)
            b.module(module.norm, norm_layer(module.norm, out))
            b.act(module.act)
            b.conv(cout, cout, k, 1, module.bias)
    elif isinstance(module, Bottleneck):
        mid = module.width or cout // module.expansion
        m, out = Shape(True, mid), Shape(True, cout)
        if module.form == "post":
            b.conv(cin, mid, 1, 1, module.bias)
            b.module(module.norm, norm_layer(module.norm, m))
            b.act(module.act)
            b.conv(mid, mid, 3, stride, module.bias)
            b.module(module.norm, norm_layer(module.norm, m))
            b.act(module.act)
            b.conv(mid, cout, 1, 1, module.bias)
            b.module(module.norm, norm_layer(module.norm, out))
        else:
            for ci, co, kk, ss in ((cin, mid, 1, 1), (mid, mid, 3, stride), (mid, cout, 1, 1)):
                b.module(module.norm, norm_layer(module.norm, Shape(True, ci)))
                b.act(module.act)
                b.conv(ci, co, kk, ss, module.bias)
    elif isinstance(module, Mlp):
        widths = [cin, *module.hidden, cout]
        for i in range(len(widths) - 1):
            b.module("linear", nn.Linear(widths[i], widths[i + 1], bias=module.bias))
            if i < len(widths) - 2:
                b.act(module.act)
    elif isinstance(module, Layers):
        return layer_list(module.layers, shape_in, width_out=cout, stride=stride)
    else:  # pragma: no cover - the spec's discriminated union admits nothing else
        raise TypeError(f"unknown module {module!r}")
    return Part(b.calls)


def layer_list(layers: list, shape: Shape, width_out: int | None = None, stride: int = 1) -> Part:
    """Build a custom layer list; a conv or linear without an explicit width maps to `width_out`.

    `width_out` is the stage's width for a residual function (so `[{linear, features: 3}, tanh, linear]`
    goes out and back); for a stem it is None and a width-less layer keeps the current width
    (the same rule as `semantics.walk_layers`).

    The first conv with a kernel > 1 (or the first conv if none) takes the entry `stride`, as torchvision's
    bottleneck puts it on its 3x3 conv.
    """
    b = _Builder()
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, Conv)]
    strided = next((i for i in convs if layers[i].kernel > 1), convs[0] if convs else None)
    for i, layer in enumerate(layers):
        if isinstance(layer, Conv):
            cout = layer.channels or width_out or shape.width
            s = layer.stride * (stride if i == strided else 1)
            b.conv(shape.width, cout, layer.kernel, s, layer.bias, layer.groups)
            shape = Shape(True, cout, shape.height, shape.breadth).strided(s)
        elif isinstance(layer, Linear):
            fout = layer.features or width_out or shape.width
            b.module("linear", nn.Linear(shape.width, fout, bias=layer.bias))
            shape = Shape(False, fout)
        elif isinstance(layer, Norm):
            b.module(layer.kind, norm_layer(layer.kind, shape, layer.groups))
        elif isinstance(layer, Act):
            b.act(layer.kind)
        elif isinstance(layer, Dropout):
            b.module("dropout", nn.Dropout(layer.p))
        elif isinstance(layer, Pool):
            cls = nn.MaxPool2d if layer.kind == "maxpool" else nn.AvgPool2d
            b.module(layer.kind, cls(layer.kernel, layer.stride, padding=layer.kernel // 2))
            shape = shape.strided(layer.stride)
    return Part(b.calls)
