"""Stage entries: what a stage does to the incoming state before its blocks (keep it, transition, stitch).

An entry kind is a spec model with `plan(ctx)` (the parts it needs, planned from the stage's F and the incoming
shape, and the shape it returns) and `emit(e, x)`, which wires those parts into the graph through the
compiler's `EntryEmitter` (`e.part(role, x)`, `e.function(fn, args, suffix)`, `e.after(y)`). Register it in
`ENTRIES` under its `kind`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from pydantic import Field

from rkcompile.fields import Coefficient, Model, PositiveInt
from rkcompile.functions import ResidualFunction, plan_function
from rkcompile.registry import Registry
from rkcompile.shapes import PartPlan, PlanError, Planner, Shape

__all__ = ["ENTRIES", "StageEntry", "register_entry", "EntryContext", "EntryPlan", "NoEntry", "Transition", "Stitch"]

ENTRIES: Registry[type[StageEntry]] = Registry("entry")


@dataclass(frozen=True)
class EntryPlan:
    """An entry's parts by role ("f", "shortcut", ...), in emission order, and the shape it returns."""

    parts: dict[str, PartPlan]
    shape: Shape


@dataclass(frozen=True)
class EntryContext:
    """What an entry is planned from: the incoming shape, the stage's width and F, and the stage's path."""

    shape: Shape
    width: int
    module: ResidualFunction
    path: tuple

    def fail(self, where: tuple, message: str) -> PlanError:
        """A located error below the stage."""
        return PlanError(message, self.path + tuple(where))

    def function(self, stride: int) -> PartPlan:
        """The stage's F planned from the incoming shape to the stage's width at `stride`."""
        return plan_residual(self.module, self.shape, self.width, stride, self.path + ("module",))

    def planner(self, numbered: bool = False) -> Planner:
        """A planner for another part (a shortcut) starting from the incoming shape."""
        return Planner(self.shape, self.path + ("entry",), numbered=numbered)


def plan_residual(module: ResidualFunction, shape: Shape, width: int, stride: int, path: tuple) -> PartPlan:
    """Plan F from `shape` to `width` at `stride`; it must return exactly that shape, or a located error."""
    f = Planner(shape, path)
    plan_function(module, f, width, stride)
    expected = replace(shape, width=width).strided(stride)
    if f.shape != expected:
        strided = f" with stride {stride}" if stride > 1 else ""
        raise f.fail((), f"module '{module.kind}'{strided} maps the state {shape.show()} to {f.shape.show()}; a "
                     f"residual function must return {expected.show()}")
    return f.result()


class StageEntry(Model):
    """Base of entry kinds."""

    kind: str

    def plan(self, ctx: EntryContext) -> EntryPlan | None:
        """The entry's parts and output shape (None: the stage starts from the incoming state)."""
        raise NotImplementedError

    def emit(self, e, x):
        """Wire the planned parts into the graph from node `x`; return the entry's output node."""
        raise NotImplementedError


register_entry = ENTRIES.register_kind  # a class decorator: registers a StageEntry subclass under its kind


@register_entry
class NoEntry(StageEntry):
    """The stage keeps the incoming width and resolution."""

    kind: Literal["none"]

    def plan(self, ctx: EntryContext) -> None:
        """Nothing to build; the stage's width must be the incoming one."""
        if ctx.width != ctx.shape.width:
            field = "channels" if ctx.shape.image else "features"
            raise ctx.fail((field,), f"width {ctx.width} differs from the incoming {ctx.shape.width} and the stage "
                           "has no entry: add 'entry: transition' or 'entry: stitch'")


def _image_entry(entry: StageEntry, ctx: EntryContext) -> None:
    if ctx.shape.state not in ("image", "signal"):
        hint = ": use 'project'" if ctx.shape.state == "tokens" else ""
        raise ctx.fail(("entry",), f"entry '{entry.kind}' needs image or signal states; this state is "
                       f"{ctx.shape.phrase()}{hint}")


@register_entry
class Transition(StageEntry):
    """ResNet transition block: one residual block with `stride`; shortcut zero-pad (parameter-free) or 1x1 conv + norm."""

    kind: Literal["transition"]
    stride: PositiveInt = 2
    shortcut: Literal["zero-pad", "conv"] = "zero-pad"

    def plan(self, ctx: EntryContext) -> EntryPlan:
        """F with stride, and a shortcut to the same shape (He et al. 2016's options A and B)."""
        _image_entry(self, ctx)
        width, shape = ctx.width, ctx.shape
        if self.shortcut == "zero-pad" and width < shape.width:
            raise ctx.fail(("entry", "shortcut"), f"a zero-pad shortcut cannot reduce the width {shape.width} → "
                           f"{width}; use 'shortcut: conv'")
        f = ctx.function(self.stride)
        short = ctx.planner()
        if self.shortcut == "conv":
            short.conv(width, 1, self.stride)
            short.norm("batchnorm")
        else:  # option A: subsample (a view) and zero channels
            suffix = "-1d" if shape.sequence == "signal" else ""
            if self.stride > 1:
                short.add("function", shape.strided(self.stride), "subsample", function="subsample" + suffix,
                          stride=self.stride)
            if width > shape.width:
                short.add("function", replace(short.shape, width=width), "pad",
                          function="pad-channels" + suffix, channels=width - shape.width)
        return EntryPlan({"f": f, "shortcut": short.result()}, f.shape)

    def emit(self, e, x):
        """shortcut(x) + F(x), then F's activation after the addition."""
        import torch

        k = e.part("f", x)
        return e.after(e.function(torch.add, (e.part("shortcut", x), k), "add"))


@register_entry
class Stitch(StageEntry):
    """ContinuousNet stitch: out = conv1x1_stride(x) + epsilon * R(x), R the stage's F with `stride`."""

    kind: Literal["stitch"]
    stride: PositiveInt = 2
    epsilon: Coefficient = Field(1, validate_default=True)

    def plan(self, ctx: EntryContext) -> EntryPlan:
        """R = F with stride, and a 1x1 strided projection (Queiruga et al. 2020)."""
        _image_entry(self, ctx)
        f = ctx.function(self.stride)
        proj = ctx.planner()
        proj.conv(ctx.width, 1, self.stride, name="proj")
        return EntryPlan({"f": f, "shortcut": proj.result()}, f.shape)

    def emit(self, e, x):
        """proj(x) + epsilon R(x)."""
        import torch

        k = e.part("f", x)
        eps = self.epsilon.value
        kwargs = {} if eps == 1 else {"alpha": float(eps)}
        return e.function(torch.add, (e.part("shortcut", x), k), "add", kwargs)
