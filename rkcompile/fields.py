"""The building blocks of every spec model: the strict base model, exact coefficients, and kind dispatch.

A field such as `module` or `entry` dispatches on its `kind` through a `Registry` at validation time, so kinds
registered later (from Python, by a user) validate like the built-in ones, and the JSON Schema lists what is
registered when it is generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict
from pydantic_core import core_schema

from rkcompile.errors import RkcompileError
from rkcompile.registry import Registry

__all__ = ["Model", "Exact", "Coefficient", "PositiveInt", "Activation", "NormKind", "ACTIVATIONS", "Kind"]

ACTIVATIONS = ("relu", "tanh", "gelu", "silu", "sigmoid", "softplus", "elu", "leaky-relu", "identity", "none")
Activation = Literal["relu", "tanh", "gelu", "silu", "sigmoid", "softplus", "elu", "leaky-relu", "identity", "none"]
NormKind = Literal["batchnorm", "groupnorm", "layernorm", "rmsnorm", "none"]

#: A strict positive integer: `true` and `"4"` are errors, not 1 and 4.
PositiveInt = Annotated[int, Strict(), Field(gt=0)]


class Model(BaseModel):
    """Base of every spec model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@dataclass(frozen=True)
class Exact:
    """A coefficient as written (1, 0.5 or "(6+sqrt(6))/15") with its exact value, parsed once at validation."""

    text: int | float | str
    value: Fraction | float

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return str(self.text)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Exact):
            return self.value == other.value
        return (isinstance(other, (int, float, Fraction)) and not isinstance(other, bool)
                and self.value == other) or self.text == other

    def __hash__(self) -> int:
        return hash(self.value)

    @classmethod
    def parse(cls, value: object) -> Exact:
        """Validate a number or exact expression; a bad one raises ValueError with the parser's message."""
        from rkcompile.exact import parse_coefficient

        if isinstance(value, Exact):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"expected a number or an exact expression such as \"1/6\", found {type(value).__name__}")
        try:
            return cls(value, parse_coefficient(value))
        except RkcompileError as e:
            raise ValueError(str(e)) from None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(lambda x: x.text),
            json_schema_input_schema=core_schema.union_schema([core_schema.float_schema(), core_schema.str_schema()]),
        )


Coefficient = Exact


class Kind:
    """Annotation of a field that dispatches on `kind` through `registry` (entries are model classes).

    A bare string stands for `{kind: string}`; a mapping without `kind` takes `default` when there is one.
    """

    def __init__(self, registry: Registry, default: str | None = None) -> None:
        self.registry = registry
        self.default = default

    def validate(self, value: object) -> BaseModel:
        """Pick the registered model for the value's kind and validate the value with it."""
        if isinstance(value, str):
            value = {"kind": value}
        if isinstance(value, BaseModel) and value.__class__ in self.registry._entries.values():
            return value
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping with 'kind' or a kind name, found {_found(value)}")
        if "kind" not in value:
            if self.default is None:
                from rkcompile.shapes import PlanError

                raise PlanError(f"missing 'kind'; expected one of {', '.join(self.registry.names())}", (),
                                compile=False)
            value = {"kind": self.default, **value}
        kind = value["kind"]
        if kind not in self.registry:
            from rkcompile.shapes import PlanError

            raise PlanError(self.registry.unknown(kind, "kind"), ("kind",), compile=False)
        return self.registry.get(kind).model_validate(value)

    def __get_pydantic_core_schema__(self, source: object, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self.validate, serialization=core_schema.plain_serializer_function_ser_schema(_dump, info_arg=True))

    _rendering: set[int] = set()  # registries whose schema is being generated (a kind may nest its own registry)

    def __get_pydantic_json_schema__(self, schema: object, handler: Any) -> dict:
        shorthand = {"enum": self.registry.names(), "description": "shorthand for {kind: NAME}"}
        if id(self.registry) in Kind._rendering:  # nested (an interleaved module's members): kinds listed above
            return {"anyOf": [{"type": "object", "required": ["kind"], "description": f"a {self.registry.what}"},
                              shorthand]}
        Kind._rendering.add(id(self.registry))
        try:
            members = [handler(model.__pydantic_core_schema__) for _, model in self.registry.items()]
        finally:
            Kind._rendering.discard(id(self.registry))
        return {"anyOf": [*members, shorthand]}


def _dump(model: BaseModel, info: Any) -> dict:
    """Serialize a dispatched kind with the caller's options (mode, exclude_unset, ...)."""
    return model.model_dump(mode=info.mode, by_alias=info.by_alias, exclude_unset=info.exclude_unset,
                            exclude_defaults=info.exclude_defaults, exclude_none=info.exclude_none)


def _found(value: object) -> str:
    return "a list" if isinstance(value, list) else f"{type(value).__name__} ({value!r:.40})"
