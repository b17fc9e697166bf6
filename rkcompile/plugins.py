"""Plugins: third-party kinds registered through the Python entry-point group `rkcompile.plugins`.

A plugin distribution declares entry points in that group, each naming a callable (called with no arguments) or
a module (imported); either registers kinds through the public API (`register_module`, `register_tableau`,
`register_head`, `FAMILIES.register`, ...). The group is read lazily, on the first lookup or listing of any
registry (never at `import rkcompile`), after every built-in kind is registered. A plugin that fails is one
`PluginWarning` naming the entry point and its distribution, and none of its kinds stay registered; a plugin kind
whose name is already taken is a `PluginError` naming both (raised by every later lookup, until one is removed).
Every registry entry remembers where it came from (`origin_of`): "built in", the registering module's path, or
"plugin DISTRIBUTION VERSION (entry point NAME)".
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

from rkcompile.errors import PluginError, PluginWarning

__all__ = ["GROUP", "discover", "origin_of", "clash", "registered"]

GROUP = "rkcompile.plugins"

#: modules whose own registrations are built in, and the modules to import before any plugin runs
_BUILTINS = ("rkcompile.functions", "rkcompile.layers", "rkcompile.entries", "rkcompile.stems", "rkcompile.heads",
             "rkcompile.sequences", "rkcompile.weights", "rkcompile.bases", "rkcompile.integrators",
             "rkcompile.tableaux", "rkcompile.multistep")
#: modules that register on someone else's behalf (skipped when looking for the registering module)
_REGISTERING = frozenset({"rkcompile.plugins", "rkcompile.registry", "rkcompile.tableaux", "rkcompile.functions",
                          "rkcompile.functions.user", "rkcompile.multistep"})


@dataclass
class _Loading:
    """The plugin being loaded: where its registrations come from, and how to undo them if it fails."""

    origin: str
    undo: list[Callable[[], object]] = field(default_factory=list)


class _State:
    done = False
    loading: _Loading | None = None
    clash: PluginError | None = None


def origin_of(entry: object = None) -> str:
    """Where a registration happening now comes from: the plugin being loaded, "built in", or the module path."""
    if _State.loading is not None:
        return _State.loading.origin
    if isinstance(entry, (type, types.FunctionType)):
        module = entry.__module__
    else:
        frame = sys._getframe(1)
        while frame.f_back is not None and frame.f_globals.get("__name__") in _REGISTERING:
            frame = frame.f_back
        module = str(frame.f_globals.get("__name__", "?"))
    return "built in" if module == "rkcompile" or module.startswith("rkcompile.") else module


def clash(what: str, name: str, old: str, new: str) -> Exception | None:
    """The error for registering `name` again: a PluginError naming both origins when a plugin is involved."""
    if not (old.startswith("plugin ") or new.startswith("plugin ")):
        return None
    return PluginError(f"{new}: {what} '{name}' is already registered ({old}); one of them must rename it")


def note(undo: Callable[[], object]) -> None:
    """Remember how to undo a registration made by the plugin being loaded (nothing outside a plugin)."""
    if _State.loading is not None:
        _State.loading.undo.append(undo)


def discover() -> None:
    """Load every plugin of the `rkcompile.plugins` group, once; called by every registry lookup and listing."""
    if _State.clash is not None:
        raise _State.clash
    if _State.done:
        return
    _State.done = True
    for module in _BUILTINS:
        importlib.import_module(module)
    for point in metadata.entry_points(group=GROUP):
        _load(point)
    if _State.clash is not None:
        raise _State.clash


def _load(point: metadata.EntryPoint) -> None:
    """Run one entry point; undo what it registered if it fails."""
    dist = getattr(point, "dist", None)
    where = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    _State.loading = loading = _Loading(f"plugin {where} (entry point '{point.name}')")
    try:
        target = point.load()
        if not isinstance(target, types.ModuleType):
            if not callable(target):
                raise TypeError(f"{point.value} is neither a callable nor a module")
            target()
    except PluginError as e:
        _undo(loading)
        _State.clash = _State.clash or e
    except Exception as e:  # a broken plugin must not break rkcompile: reported, skipped
        _undo(loading)
        detail = " ".join(str(e).split())
        warnings.warn(f"rkcompile plugin '{point.name}' from {where} failed and was skipped: "
                      f"{type(e).__name__}{': ' + detail if detail else ''}", PluginWarning, stacklevel=4)
    finally:
        _State.loading = None


def _undo(loading: _Loading) -> None:
    for undo in reversed(loading.undo):
        undo()


def registered() -> dict[str, list[tuple[str, str]]]:
    """Every registry's (name, origin) pairs, by registry: what `rkcompile kinds` lists."""
    from rkcompile.bases import BASES
    from rkcompile.entries import ENTRIES
    from rkcompile.functions import FUNCTIONS
    from rkcompile.heads import HEADS
    from rkcompile.integrators import FAMILIES
    from rkcompile.layers import LAYERS
    from rkcompile.multistep import list_multistep, multistep_origin
    from rkcompile.stems import STEMS
    from rkcompile.tableaux import list_tableaux, tableau_origin
    from rkcompile.weights import WEIGHTS

    discover()
    out: dict[str, list[tuple[str, str]]] = {}
    for what, registry in (("residual functions", FUNCTIONS), ("layers", LAYERS), ("entries", ENTRIES),
                           ("stems", STEMS), ("heads", HEADS), ("weight modes", WEIGHTS), ("bases", BASES),
                           ("integrator families", FAMILIES)):
        out[what] = [(name, registry.origin(name)) for name in registry.names()]
    out["tableaux"] = [(name, tableau_origin(name)) for name in list_tableaux()]
    out["multistep methods"] = [(name, multistep_origin(name)) for name in list_multistep()]
    return out
