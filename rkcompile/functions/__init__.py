"""Residual-function kinds F: one small file per kind, registered by name in `FUNCTIONS`.

A kind is a `ResidualFunction` subclass with a `kind: Literal["name"]` field, its options as Pydantic fields,
and `plan(f, width, stride)`, which appends F's layers to the `Planner` f (the state it starts from is
`f.shape`) so that F returns `width` channels or features at `stride`. Register it with `register_module`;
the spec's `module:` field then accepts it, `check` plans it, the compiler builds it and drawings name it
by `label()`. See docs/spec.md, "Extending rkcompile".
"""

from __future__ import annotations

from typing import ClassVar

from rkcompile.fields import Activation, Model
from rkcompile.registry import Registry
from rkcompile.shapes import Planner

__all__ = ["FUNCTIONS", "ResidualFunction", "register_module"]

FUNCTIONS: Registry[type[ResidualFunction]] = Registry("residual function")


class ResidualFunction(Model):
    """Base of residual-function kinds: `after` is an activation applied after each residual addition."""

    kind: str
    after: Activation | None = None
    #: "image", "vector", "signal", "tokens", a tuple of them, or None (any state): checked before `plan`;
    #: `state_hint` words the error.
    state: ClassVar[str | tuple[str, ...] | None] = None
    state_hint: ClassVar[str] = ""
    #: A small valid configuration, e.g. {"kind": "mlp", "hidden": [5]}: the tests build every kind from it.
    example: ClassVar[dict] = {}
    example_state: ClassVar[str] = "image"  # the state the example is for, when `state` does not say

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """Append F's layers, mapping `f.shape` to `width` at `stride`."""
        raise NotImplementedError

    def after_activation(self) -> str | None:
        """The activation after the residual addition (None for none)."""
        return self.after

    def label(self) -> str:
        """How drawings and tables name this F."""
        return self.kind

    def cycle(self) -> list[ResidualFunction]:
        """The residual functions that evaluations call in turn (evaluation j calls member j mod the cycle's length)."""
        return [self]

    def member_path(self, j: int) -> tuple:
        """Where member j of the cycle sits below `module` in the spec (for located errors)."""
        return ()

    def states(self) -> tuple[str, ...]:
        """The states this kind accepts (empty: any)."""
        return () if self.state is None else (self.state,) if isinstance(self.state, str) else tuple(self.state)


def register_module(model, factory=None, args=None) -> type[ResidualFunction]:
    """Register a residual-function kind: a ResidualFunction subclass under its `kind` literal (usable as a class
    decorator), or `register_module(kind, factory, args=None)` for any nn.Module factory (`functions.user`)."""
    if isinstance(model, str):
        from rkcompile.functions.user import register_user_module

        return register_user_module(model, factory, args)
    if not (isinstance(model, type) and issubclass(model, ResidualFunction)):
        raise TypeError(f"register_module expects a ResidualFunction subclass, found {model!r}")
    return FUNCTIONS.register_kind(model)


def plan_function(module: ResidualFunction, f: Planner, width: int, stride: int) -> None:
    """Check the kind's state requirement, then plan it."""
    states = module.states()
    if states and f.shape.state not in states:
        hint = module.state_hint or f"needs {' or '.join(states)} states"
        raise f.fail(("kind",), f"module '{module.kind}' {hint}")
    module.plan(f, width, stride)


def _register_builtins() -> None:
    from rkcompile.functions import (  # noqa: F401  (each registers itself)
        attention,
        basic,
        bottleneck,
        ffn,
        interleaved,
        layers,
        mlp,
        transformer,
    )


_register_builtins()
