"""Stems, heads and entries for sequence states: token ids → embeddings, images → ViT patches, 1-d signals.

Token sequences are N x L x F (length, features), signals N x C x L (channels, length). Each layer is planned
on the shape planner like every other part, so `check` validates it and analyses see it as its own node.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import ClassVar, Literal

from pydantic import Field

from rkcompile.entries import EntryContext, EntryPlan, StageEntry, register_entry
from rkcompile.fields import PositiveInt
from rkcompile.functions.attention import _modules
from rkcompile.heads import HeadKind, register_head
from rkcompile.shapes import Planner, Shape
from rkcompile.stems import ConvStem, StemKind, plan_conv_stem, register_stem

__all__ = ["Embedding", "Patch", "Conv1dStem", "PerToken", "Project"]


def _positional(f: Planner, positional: str, dropout: float) -> None:
    if positional == "learned":
        f.module("pos", lambda shape_in, shape: _modules().PositionalEmbedding(shape.length, shape.width), f.shape,
                 label="+ position")
    if dropout:
        f.dropout(dropout)


@register_stem
class Embedding(StemKind):
    """Token ids {length, vocabulary} → token embedding (nn.Embedding) + learned positional embedding → dropout."""

    kind: Literal["embedding"]
    example: ClassVar[dict] = {"kind": "embedding", "features": 4}
    example_input: ClassVar[dict] = {"length": 6, "vocabulary": 11}
    features: PositiveInt
    positional: Literal["learned", "none"] = "learned"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def plan(self, f: Planner) -> None:
        """embed, pos, dropout."""
        f.need(("ids",), "an embedding stem", ())
        f.module("embed", lambda shape_in, shape: _modules().nn.Embedding(shape_in.width, shape.width),
                 Shape.tokens(f.shape.length, self.features))
        _positional(f, self.positional, self.dropout)


@register_stem
class Patch(StemKind):
    """Images → ViT patch tokens: patch x patch conv to `features`, flatten, [class token], positional embedding."""

    kind: Literal["patch"]
    example: ClassVar[dict] = {"kind": "patch", "patch": 3, "features": 4}
    patch: PositiveInt
    features: PositiveInt
    class_token: bool = True
    positional: Literal["learned", "none"] = "learned"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def plan(self, f: Planner) -> None:
        """conv_proj, tokens, cls, pos, dropout."""
        if not f.shape.image:
            raise f.fail((), f"a patch stem needs image input {{channels, height, width}}; this input is "
                         f"{f.shape.phrase()}")
        height, width = f.shape.height, f.shape.breadth
        if height % self.patch or width % self.patch:
            raise f.fail(("patch",), f"patch {self.patch} does not divide the image {height}x{width}; use a common "
                         f"divisor such as {math.gcd(height, width)}")
        grid = Shape(True, self.features, height // self.patch, width // self.patch)
        f.module("conv_proj", lambda shape_in, shape: _modules().PatchProjection(shape_in.width, shape.width, self.patch), grid,
                 label=f"patch {self.patch}x{self.patch}")
        f.function("tokens", "to-tokens", Shape.tokens(grid.height * grid.breadth, self.features))
        if self.class_token:
            f.module("cls", lambda shape_in, shape: _modules().ClassToken(shape.width), replace(f.shape, height=f.shape.length + 1),
                     label="+ class token")
        _positional(f, self.positional, self.dropout)


@register_stem
class Conv1dStem(ConvStem):
    """Signals {channels, length}: conv1d(kernel, stride) → norm → act [→ pool], as the conv stem does for images
    (the same fields)."""

    kind: Literal["conv1d"]  # type: ignore[assignment]  # a subclass's own discriminator value
    example: ClassVar[dict] = {"kind": "conv1d", "channels": 4}
    example_input: ClassVar[dict] = {"channels": 2, "length": 12}

    def plan(self, f: Planner) -> None:
        """conv, norm, act, pool (named without numbers)."""
        f.need(("signal",), "a conv1d stem", ())
        plan_conv_stem(self, f)


@register_head
class PerToken(HeadKind):
    """[norm →] a linear layer applied to every token: N x L x F → N x L x `classes` (language modelling, tagging)."""

    kind: Literal["per-token"]
    example: ClassVar[dict] = {"kind": "per-token", "classes": 3}
    example_input: ClassVar[dict] = {"length": 6, "features": 4}
    classes: PositiveInt
    norm: Literal["layernorm", "rmsnorm", "none"] = "none"
    eps: float | None = Field(None, gt=0)
    bias: bool = True

    def plan(self, f: Planner) -> None:
        """ln, fc."""
        f.need(("tokens",), "a per-token head", ())
        f.norm(self.norm, eps=self.eps, name="ln")
        f.linear(self.classes, self.bias)


@register_entry
class Project(StageEntry):
    """Tokens: [average runs of `stride` tokens →] [norm →] a linear map to the stage's features."""

    kind: Literal["project"]
    example: ClassVar[dict] = {"kind": "project"}
    stride: PositiveInt = 1
    norm: Literal["layernorm", "rmsnorm", "none"] = "none"
    bias: bool = True

    def plan(self, ctx: EntryContext) -> EntryPlan:
        """pool (stride > 1), norm, linear."""
        if ctx.shape.state != "tokens":
            raise ctx.fail(("entry",), f"entry 'project' needs tokens states; this state is {ctx.shape.phrase()}: use "
                           "'transition' or 'stitch'")
        f = ctx.planner()
        if self.stride > 1:
            f.function("pool", "pool-tokens", ctx.shape.strided(self.stride), stride=self.stride)
        f.norm(self.norm, name="ln")
        f.linear(ctx.width, self.bias, name="proj")
        return EntryPlan({"shortcut": f.result()}, f.shape)  # the projection is the entry's only path

    def emit(self, e, x):
        """The projection alone (no residual: the width or length changes)."""
        return e.part("shortcut", x)
