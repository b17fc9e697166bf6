"""Stems: what maps the network input to the first stage's state. A stem kind plans its layers on a Planner."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from rkcompile.fields import Activation, Kind, Model, NormKind, PositiveInt
from rkcompile.layers import LAYERS, Layer, Pool, plan_layers
from rkcompile.registry import Registry
from rkcompile.shapes import Planner

__all__ = ["STEMS", "StemKind", "ConvStem", "LayersStem", "plan_conv_stem", "register_stem"]

STEMS: Registry[type[StemKind]] = Registry("stem")


class StemKind(Model):
    """Base of stem kinds; `numbered` names its layers conv1, bn1, ... rather than conv, bn."""

    kind: str
    numbered: ClassVar[bool] = False

    def plan(self, f: Planner) -> None:
        """Append the stem's layers to `f` (located at `stem`)."""
        raise NotImplementedError


register_stem = STEMS.register_kind  # a class decorator: registers a StemKind subclass under its kind


@register_stem
class ConvStem(StemKind):
    """conv(kernel, stride) → norm → act [→ max pool]: the usual image stem."""

    kind: Literal["conv"]
    example: ClassVar[dict] = {"kind": "conv", "channels": 4}
    channels: PositiveInt
    kernel: PositiveInt = 3
    stride: PositiveInt = 1
    bias: bool = False
    norm: NormKind = "batchnorm"
    act: Activation = "relu"
    pool: Pool | None = None

    def plan(self, f: Planner) -> None:
        """conv, norm, act, pool (named without numbers)."""
        if not f.shape.image:
            raise f.fail((), "a conv stem needs image input {channels, height, width}")
        plan_conv_stem(self, f)


def plan_conv_stem(stem, f: Planner) -> None:
    """The conv stem's layers on any conv state (image or signal): conv, norm, act, optional pool."""
    f.conv(stem.channels, stem.kernel, stem.stride, stem.bias)
    f.norm(stem.norm)
    f.act(stem.act)
    if stem.pool is not None:
        f.pool(stem.pool.kind, stem.pool.kernel, stem.pool.stride, ("pool",), name="pool")


@register_stem
class LayersStem(StemKind):
    """A custom list of layers; a conv or linear without a width keeps the current width."""

    kind: Literal["layers"]
    example: ClassVar[dict] = {"layers": ["conv", "relu"]}
    layers: list[Annotated[Layer, Kind(LAYERS)]] = Field(min_length=1)
    numbered: ClassVar[bool] = True

    def plan(self, f: Planner) -> None:
        """The layers in order."""
        plan_layers(self.layers, f, ("layers",), None)
