"""One generic name → entry registry (the timm/torchdiffeq manner) behind every open vocabulary of the spec language."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, cast, overload

from rkcompile import plugins
from rkcompile.errors import RkcompileError, did_you_mean

__all__ = ["Registry", "RegistryError", "kind_of"]

T = TypeVar("T")


class RegistryError(RkcompileError, ValueError):
    """An unknown or duplicate name in a registry (a ValueError too, so Pydantic validators report it)."""


class Registry(Generic[T]):
    """Named entries of one vocabulary (residual functions, layers, entries, ...), in registration order.

    Every lookup and listing first loads the plugins (`rkcompile.plugins.discover`, once); each entry remembers
    where it was registered from (`origin`).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    @overload
    def register(self, name: str, entry: T, origin: str | None = None) -> T: ...

    @overload
    def register(self, name: str, entry: None = None, origin: str | None = None) -> Callable[[T], T]: ...

    def register(self, name: str, entry: T | None = None, origin: str | None = None) -> T | Callable[[T], T]:
        """Add `entry` under `name` (once); without `entry`, return a decorator that registers what it decorates.
        `origin` says where it comes from (default: the plugin being loaded, "built in" or the entry's module)."""
        if entry is None:
            return lambda e: self.register(name, e, origin)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"a {self.what} name must be a non-empty string, found {name!r}")
        origin = plugins.origin_of(entry) if origin is None else origin
        if name in self._entries:
            old = self._origins[name]
            raise plugins.clash(self.what, name, old, origin) or RegistryError(
                f"a {self.what} named '{name}' is already registered ({old})")
        self._entries[name] = entry
        self._origins[name] = origin
        plugins.note(lambda: self.unregister(name))
        return entry

    def register_kind(self, model: T) -> T:
        """Register a spec model class under the single value of its `kind: Literal[...]` (a class decorator)."""
        return self.register(kind_of(cast(type, model)), model)

    def get(self, name: object) -> T:
        """The entry called `name`; an unknown name is quoted with the nearest valid one and the full list."""
        plugins.discover()
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        raise RegistryError(self.unknown(name))

    def unknown(self, name: object, what: str | None = None) -> str:
        """The message for a name not registered: quoted, the nearest valid name, and the full list."""
        names = self.names()
        return f"unknown {what or self.what} {name!r}{did_you_mean(name, names)}; expected one of {', '.join(names)}"

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        plugins.discover()
        return list(self._entries)

    def origin(self, name: str) -> str:
        """Where the entry called `name` was registered from: "built in", a module path, or "plugin DIST ..."."""
        self.get(name)
        return self._origins[name]

    def __contains__(self, name: object) -> bool:
        plugins.discover()
        return isinstance(name, str) and name in self._entries  # a YAML list or mapping as a kind is just unknown

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order."""
        plugins.discover()
        return list(self._entries.items())

    def unregister(self, name: str) -> T:
        """Remove and return an entry (for tests and interactive redefinition)."""
        self._origins.pop(name, None)
        return self._entries.pop(name)


def kind_of(model: type) -> str:
    """The `kind` a model class is registered under: the single value of its `kind: Literal[...]` field."""
    field = getattr(model, "model_fields", {}).get("kind")
    values: tuple = getattr(field.annotation, "__args__", ()) if field is not None else ()
    if len(values) != 1 or not isinstance(values[0], str):
        raise RegistryError(f"{getattr(model, '__name__', model)!r} needs a field `kind: Literal['<name>']` naming "
                            "its kind")
    return values[0]
