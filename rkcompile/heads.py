"""Heads: what maps the last stage's state to the network output. A head kind plans its layers on a Planner."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rkcompile.fields import Model, PositiveInt
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
    """Classification head: global average pool (images), optional dropout, a linear layer to `classes` logits."""

    kind: Literal["classifier"] = "classifier"
    example: ClassVar[dict] = {"kind": "classifier", "classes": 3}
    classes: PositiveInt
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def plan(self, f: Planner) -> None:
        """pool, flatten (images), dropout, fc."""
        if f.shape.image:
            f.add("function", f.shape, "pool", "avgpool", function="global-avgpool")
            f.add("function", Shape(False, f.shape.width), "flatten", "flatten", function="flatten")
        if self.dropout:
            f.dropout(self.dropout)
        f.linear(self.classes)
