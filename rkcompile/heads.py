"""Heads: what maps the last stage's state to the network output. A head kind plans its layers on a Planner."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rkcompile.fields import Activation, Model, NormKind, PositiveInt
from rkcompile.registry import Registry
from rkcompile.shapes import Planner, Shape

__all__ = ["HEADS", "HeadKind", "LinearHead", "Classifier", "Regression", "register_head"]

HEADS: Registry[type[HeadKind]] = Registry("head")


class HeadKind(Model):
    """Base of head kinds."""

    kind: str

    def plan(self, f: Planner) -> None:
        """Append the head's layers to `f` (located at `output`)."""
        raise NotImplementedError


register_head = HEADS.register_kind  # a class decorator: registers a HeadKind subclass under its kind


class LinearHead(HeadKind):
    """[norm → act →] pool → optional dropout → a linear map to `size()` outputs; `pool: none` keeps the positions.

    Pre-activation ResNets (He et al. 2016) end in BN-ReLU before the pool: `norm: batchnorm, act: relu`. With
    `pool: none` the map is applied at every position: a 1x1 conv on images (N x out x H x W) and signals
    (N x out x L), a linear layer on each token (N x L x out).
    """

    kind: str
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    pool: Literal["mean", "cls", "none"] | None = None
    norm: NormKind = "none"
    act: Activation = "none"
    eps: float | None = Field(None, gt=0)

    def size(self) -> int:
        """The number of outputs."""
        raise NotImplementedError

    def plan(self, f: Planner) -> None:
        """norm, act, pool, flatten (images), dropout, fc (or a 1x1 conv at every position)."""
        if self.pool in ("mean", "cls") and f.shape.state != "tokens":
            raise f.fail(("pool",), f"'pool' chooses how tokens are pooled; this state is {f.shape.phrase()}")
        if self.pool == "none" and f.shape.state == "vector":
            raise f.fail(("pool",), "'pool: none' keeps the positions of images, signals and tokens; this state is a "
                         "vector (it has none)")
        f.norm(self.norm, eps=self.eps, name="ln")
        f.act(self.act, name="act")
        if self.pool == "none":
            if self.dropout:
                f.dropout(self.dropout)
            if f.shape.state == "tokens":
                f.linear(self.size())
            else:
                f.conv(self.size(), kernel=1, bias=True, name="fc")
            return
        if f.shape.image:
            f.add("function", f.shape, "pool", "avgpool", function="global-avgpool")
            f.add("function", Shape(False, f.shape.width), "flatten", "flatten", function="flatten")
        elif f.shape.state in ("signal", "tokens"):  # mean over positions (signals: dim 2, tokens: dim 1)
            if self.pool == "cls":
                f.function("pool", "select", Shape(False, f.shape.width), "cls token", index=0)
            else:
                f.function("pool", "mean", Shape(False, f.shape.width), "mean", dim=2 if f.shape.state == "signal" else 1)
        if self.dropout:
            f.dropout(self.dropout)
        f.linear(self.size())


@register_head
class Classifier(LinearHead):
    """Classification head: `classes` logits (no softmax: the loss, e.g. cross-entropy, applies it)."""

    kind: Literal["classifier"] = "classifier"
    example: ClassVar[dict] = {"kind": "classifier", "classes": 3}
    classes: PositiveInt

    def size(self) -> int:
        """`classes`."""
        return self.classes


@register_head
class Regression(LinearHead):
    """Regression head: `outputs` real values (any width; no class or softmax assumptions), e.g. a pendulum's state."""

    kind: Literal["regression"]
    example: ClassVar[dict] = {"kind": "regression", "outputs": 2}
    outputs: PositiveInt

    def size(self) -> int:
        """`outputs`."""
        return self.outputs
