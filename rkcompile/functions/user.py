"""User modules: any `nn.Module` factory registered as a residual-function kind, `register_module(kind, factory)`.

`factory(width, **args)` returns a module mapping a state to one of the same shape; `args` (a Pydantic model)
validates the spec's fields for it. The compiler inlines the module's forward (torch.fx symbolic trace) so that
analyses see every layer; one that cannot be traced stays one node, and the analysis says its temporaries are
hidden. A spec names only the kind: nothing in a spec or artifact imports code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar, Literal

from pydantic import BaseModel, create_model
from torch import nn

from rkcompile.errors import CompileError
from rkcompile.functions import FUNCTIONS, ResidualFunction
from rkcompile.shapes import Planner

__all__ = ["UserModule", "register_user_module"]


class UserModule(ResidualFunction):
    """Base of registered user modules: the spec's fields (besides kind and after) are the factory's arguments."""

    factory: ClassVar[Callable[..., object] | None] = None

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """One module (inlined when traceable) mapping the state to itself."""
        if stride > 1:
            raise f.fail(("kind",), f"user module '{self.kind}' keeps the state's shape; an entry with stride "
                         f"{stride} cannot use it")
        f.module(re.sub(r"\W", "_", self.kind), lambda shape_in, shape: self.make(shape.width), f.shape,
                 label=self.kind, inline=True)

    def arguments(self) -> dict:
        """The factory's keyword arguments: every field but kind and after."""
        return {name: getattr(self, name) for name in type(self).model_fields if name not in ("kind", "after")}

    def make(self, width: int) -> nn.Module:
        """factory(width, **arguments), checked to be an nn.Module."""
        factory = type(self).factory
        assert factory is not None, "register_user_module sets the factory"
        module = factory(width, **self.arguments())
        if not isinstance(module, nn.Module):
            raise CompileError(f"the factory of user module '{self.kind}' returned {type(module).__name__}, expected "
                               "an nn.Module")
        return module


def register_user_module(kind: str, factory, args: type[BaseModel] | None = None) -> type[UserModule]:
    """Register `factory(width, **args)` as residual-function kind `kind`; `args` validates the spec's fields."""
    if not callable(factory):
        raise TypeError(f"register_module('{kind}', factory): factory must be callable, found {factory!r}")
    fields = {}
    if args is not None:
        if not (isinstance(args, type) and issubclass(args, BaseModel)):
            raise TypeError(f"register_module('{kind}', factory, args): args must be a Pydantic model class, found "
                            f"{args!r}")
        for name, field in args.model_fields.items():
            if name in ResidualFunction.model_fields:
                raise TypeError(f"user module '{kind}': field '{name}' is reserved; rename it")
            fields[name] = (field.annotation, field)
    model = create_model(f"UserModule[{kind}]", __base__=UserModule, kind=(Literal[kind], ...),  # type: ignore[call-overload]  # a Literal built at run time
                         **fields)
    model.factory = staticmethod(factory)
    model.__doc__ = f"User module '{kind}' ({getattr(factory, '__qualname__', factory)})."
    from rkcompile.plugins import origin_of

    FUNCTIONS.register(kind, model, origin_of(factory))
    return model
