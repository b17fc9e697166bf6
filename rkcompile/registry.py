"""One generic name → entry registry (the timm/torchdiffeq manner) behind every open vocabulary of the spec language."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from rkcompile.errors import RkcompileError, did_you_mean

__all__ = ["Registry", "RegistryError", "kind_of"]

T = TypeVar("T")


class RegistryError(RkcompileError, ValueError):
    """An unknown or duplicate name in a registry (a ValueError too, so Pydantic validators report it)."""


class Registry(Generic[T]):
    """Named entries of one vocabulary (residual functions, layers, entries, ...), in registration order."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Add `entry` under `name` (once); without `entry`, return a decorator that registers what it decorates."""
        if entry is None:
            return lambda e: self.register(name, e)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"a {self.what} name must be a non-empty string, found {name!r}")
        if name in self._entries:
            raise RegistryError(f"a {self.what} named '{name}' is already registered")
        self._entries[name] = entry
        return entry

    def register_kind(self, model: T) -> T:
        """Register a spec model class under the single value of its `kind: Literal[...]` (a class decorator)."""
        return self.register(kind_of(model), model)

    def get(self, name: object) -> T:
        """The entry called `name`; an unknown name is quoted with the nearest valid one and the full list."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        raise RegistryError(self.unknown(name))

    def unknown(self, name: object, what: str | None = None) -> str:
        """The message for a name not registered: quoted, the nearest valid name, and the full list."""
        names = self.names()
        return f"unknown {what or self.what} {name!r}{did_you_mean(name, names)}; expected one of {', '.join(names)}"

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries  # a YAML list or mapping as a kind is just unknown

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order."""
        return list(self._entries.items())

    def unregister(self, name: str) -> T:
        """Remove and return an entry (for tests and interactive redefinition)."""
        return self._entries.pop(name)


def kind_of(model: type) -> str:
    """The `kind` a model class is registered under: the single value of its `kind: Literal[...]` field."""
    field = getattr(model, "model_fields", {}).get("kind")
    values = getattr(field.annotation, "__args__", ()) if field is not None else ()
    if len(values) != 1 or not isinstance(values[0], str):
        raise RegistryError(f"{getattr(model, '__name__', model)!r} needs a field `kind: Literal['<name>']` naming "
                            "its kind")
    return values[0]
