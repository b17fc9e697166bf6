"""Layer kinds of custom layer lists (`layers: [conv, batchnorm, relu, ...]`), each planned by the shape rule.

A layer kind is a spec model with `plan(f, where, target, stride, residual)`; register it in `LAYERS` under each
of its kind names. A conv or linear without an explicit width maps to `target` (the residual function's width)
or, in a stem (`target` None), keeps the current width.
"""

from __future__ import annotations

import typing
from typing import ClassVar, Literal, cast

from pydantic import Field

from rkcompile.fields import Model, PositiveInt
from rkcompile.registry import Registry
from rkcompile.shapes import Planner

__all__ = ["LAYERS", "Layer", "Conv", "Linear", "Norm", "Act", "Dropout", "Pool", "SqueezeExcitation", "plan_layers"]

LAYERS: Registry[type[Model]] = Registry("layer kind")


class Layer(Model):
    """Base of layer kinds; `example` holds options that make a small valid instance (for the tests)."""

    kind: str
    example: ClassVar[dict] = {}

    def plan(self, f: Planner, where: tuple, target: int | None, stride: int = 1, residual: bool = False) -> None:
        """Append this layer to `f` (`stride` is an entry's extra stride; `residual`: inside F)."""
        raise NotImplementedError


def _no_resolution_change(layer: Conv | Pool, where: tuple, f: Planner, residual: bool) -> None:
    if residual and layer.stride > 1:
        raise f.fail(where + ("stride",), "a residual function cannot change resolution; use a stage 'entry' to "
                     "downsample")


class Conv(Layer):
    """A 2-d convolution with padding kernel // 2; `channels` defaults to the surrounding width."""

    kind: Literal["conv"]
    channels: PositiveInt | None = None
    kernel: PositiveInt = 3
    stride: PositiveInt = 1
    bias: bool = False
    groups: PositiveInt = 1

    def plan(self, f: Planner, where: tuple, target: int | None, stride: int = 1, residual: bool = False) -> None:
        """Convolve to `channels` (or the target width)."""
        f.need_image(self.kind, where)
        _no_resolution_change(self, where, f, residual)
        f.conv(self.channels or target or f.shape.width, self.kernel, self.stride * stride, self.bias, self.groups,
               where)


class Linear(Layer):
    """A fully connected layer; `features` defaults to the surrounding width."""

    kind: Literal["linear"]
    features: PositiveInt | None = None
    bias: bool = True

    def plan(self, f: Planner, where: tuple, target: int | None, stride: int = 1, residual: bool = False) -> None:
        """Map to `features` (or the target width)."""
        f.linear(self.features or target or f.shape.width, self.bias, where)


class Norm(Layer):
    """A normalisation layer over the current width (`groups` for groupnorm)."""

    kind: Literal["batchnorm", "groupnorm", "layernorm", "rmsnorm"]
    groups: PositiveInt = 32
    eps: float | None = Field(None, gt=0)
    example: ClassVar[dict] = {"groups": 2}

    def plan(self, f: Planner, where: tuple, target: int | None, stride: int = 1, residual: bool = False) -> None:
        """Normalise (groupnorm's groups must divide the width)."""
        f.norm(self.kind, self.groups if self.kind == "groupnorm" else None, where, eps=self.eps)


class Act(Layer):
    """A pointwise activation."""

    kind: Literal["relu", "tanh", "gelu", "silu", "sigmoid", "softplus", "elu", "leaky-relu", "identity", "none"]

    def plan(self, f: Planner, where: tuple, target: int | None, stride: int = 1, residual: bool = False) -> None:
        """Apply the activation."""
        f.act(self.kind)


class Dropout(Layer):
    """Dropout with probability `p`."""

    kind: Literal["dropout"]
    p: float = Field(0.5, ge=0.0, lt=1.0)

    def plan(self, f: Planner, where: tuple, target: int | None, stride: int = 1, residual: bool = False) -> None:
        """Drop out."""
        f.dropout(self.p)


class Pool(Layer):
    """Max or average pooling (used in stems, e.g. torchvision's 3x3 stride-2 max pool)."""

    kind: Literal["maxpool", "avgpool"]
    kernel: PositiveInt = 3
    stride: PositiveInt = 2

    def plan(self, f: Planner, where: tuple, target: int | None, stride: int = 1, residual: bool = False) -> None:
        """Pool with padding kernel // 2."""
        f.need_image(self.kind, where)
        _no_resolution_change(self, where, f, residual)
        f.pool(self.kind, self.kernel, self.stride * stride, where)


class SqueezeExcitation(Layer):
    """Squeeze-and-excitation (Hu et al. 2018): x · sigmoid(W₂ relu(W₁ mean(x) + b₁) + b₂), one gate per channel;
    W₁ maps the channels C to `squeeze` (default C / `reduction`), W₂ back (1x1 convs, as torchvision's)."""

    kind: Literal["squeeze-excitation"]
    reduction: PositiveInt = 16
    squeeze: PositiveInt | None = None
    example: ClassVar[dict] = {"reduction": 2}

    def plan(self, f: Planner, where: tuple, target: int | None, stride: int = 1, residual: bool = False) -> None:
        """One module (inlined: pool, fc1, relu, fc2, sigmoid, multiply) that keeps the shape."""
        f.need(("image", "signal"), "layer 'squeeze-excitation'", where)
        width = f.shape.width
        squeeze = self.squeeze or width // self.reduction
        if squeeze < 1:
            raise f.fail(where + ("reduction",), f"reduction {self.reduction} leaves no channels of {width}; "
                         f"nearest valid: {width}")
        dims = 2 if f.shape.image else 1
        f.module(f._name("se", None), lambda shape_in, shape: _squeeze_excitation(shape.width, squeeze, dims),
                 f.shape, label=f"squeeze-excitation {width}→{squeeze}", inline=True)


def _squeeze_excitation(channels: int, squeeze: int, dims: int) -> object:
    from rkcompile.modules import SqueezeExcitation as Module

    return Module(channels, squeeze, dims)


for _model in (Conv, Linear, Norm, Act, Dropout, Pool, SqueezeExcitation):
    for _name in typing.get_args(_model.model_fields["kind"].annotation):
        LAYERS.register(_name, _model)


def plan_layers(layers: list[Layer], f: Planner, where: tuple, target: int | None, stride: int = 1,
                residual: bool = False) -> None:
    """Plan a layer list; an entry's `stride` goes to the first conv with kernel > 1 (else the first conv).

    torchvision's bottleneck puts the stride on its 3x3 conv in the same way.
    """
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, Conv)]
    strided = next((i for i in convs if cast(Conv, layers[i]).kernel > 1), convs[0] if convs else None)  # convs are Conv
    for i, layer in enumerate(layers):
        layer.plan(f, where + (i,), target, stride if i == strided else 1, residual)
