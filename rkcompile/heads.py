"""Heads: what maps the last stage's state to the network output. A head kind plans its layers on a Planner."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rkcompile.fields import Model, NormKind, PositiveInt
from rkcompile.registry import Registry
from rkcompile.shapes import Planner, Shape

__all__ = ["HEADS", "HeadKind", "Classifier", "register_head"]

HEADS: Registry[type[HeadKind]] = Registry("head")


class HeadKind(Model):
    """Base of head kinds."""

    kind: str

    def plan(self, f: Planner) -> None:
        """Append the head's layers to `f` (located at `output`)."""
        raise NotImplementedError


register_head = HEADS.register_kind  # a class decorator: registers a HeadKind subclass under its kind


@register_head
class Classifier(HeadKind):
    """Classification head: [norm →] pool (images and signals: global average; tokens: `pool` mean or cls, the
    first token) → optional dropout → a linear layer to `classes` logits."""

    kind: Literal["classifier"] = "classifier"
    example: ClassVar[dict] = {"kind": "classifier", "classes": 3}
    classes: PositiveInt
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    pool: Literal["mean", "cls"] | None = None
    norm: NormKind = "none"
    eps: float | None = Field(None, gt=0)

    def plan(self, f: Planner) -> None:
        """norm, pool, flatten (images), dropout, fc."""
        if self.pool is not None and f.shape.state != "tokens":
            raise f.fail(("pool",), f"'pool' chooses how tokens are pooled; this state is {f.shape.phrase()}")
        f.norm(self.norm, eps=self.eps, name="ln")
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
        f.linear(self.classes)
