"""The tableau library: a name -> Tableau registry (torchdiffeq's SOLVERS / timm's model registry style)."""

from __future__ import annotations

import re

from rkcompile import plugins
from rkcompile.errors import TableauError, did_you_mean
from rkcompile.tableau import Tableau

__all__ = ["get_tableau", "list_tableaux", "register_tableau", "tableau_origin", "tableau_origins"]

# Insertion order is preference order among tableaux of the same order (used for "rk5" -> "dopri5").
_REGISTRY: dict[str, Tableau] = {}
_ORIGINS: dict[str, str] = {}  # name -> "built in", the registering module, or the plugin (rkcompile.plugins)


def register_tableau(tableau: Tableau) -> Tableau:
    """Add a tableau under its (lower-cased) name; a name can be registered once."""
    if not isinstance(tableau, Tableau):
        raise TableauError(f"register_tableau expects a Tableau, found {type(tableau).__name__}")
    return _add(tableau, plugins.origin_of())


def _add(tableau: Tableau, origin: str) -> Tableau:
    key = tableau.name.lower()
    if key in _REGISTRY:
        raise plugins.clash("tableau", key, _ORIGINS[key], origin) or TableauError(
            f"a tableau named {key!r} is already registered ({_ORIGINS[key]})")
    if origin != "built in":  # one name, one integrator: a multistep method's name is taken too
        from rkcompile.multistep import MULTISTEP, multistep_origin

        if key in MULTISTEP:
            old = f"a multistep method, {multistep_origin(key)}"
            raise plugins.clash("integrator", key, old, origin) or TableauError(
                f"an integrator named {key!r} is already registered ({old})")
    _REGISTRY[key] = tableau
    _ORIGINS[key] = origin
    plugins.note(lambda: (_REGISTRY.pop(key), _ORIGINS.pop(key)))
    return tableau


def list_tableaux() -> list[str]:
    """Registered names, by order and then by name."""
    plugins.discover()
    return sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, n))


def tableau_origin(name: str) -> str:
    """Where the tableau called `name` was registered from ("built in", a module path or a plugin)."""
    return _ORIGINS[get_tableau(name).name.lower()]


def tableau_origins() -> dict[str, str]:
    """Every registered tableau name and where it came from."""
    return dict(_ORIGINS)


def get_tableau(name: str) -> Tableau:
    """The registered tableau called `name` (case-insensitive); unknown names get a suggestion and the full list."""
    if not isinstance(name, str):
        raise TableauError(f"a tableau name must be a string, found {type(name).__name__} ({name!r})")
    plugins.discover()
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    names = list_tableaux()
    raise TableauError(f"unknown tableau {name!r}{_suggest(key, names)}; valid names: {', '.join(names)}")


def _suggest(key: str, names: list[str]) -> str:
    """' (did you mean ...?)': for "rk5"/"order5" the preferred tableau of that order, else the nearest name."""
    m = re.fullmatch(r"(?:rk|order)[-_ ]?(\d+)", key)
    if m:
        # difflib would offer "rk4" for "rk5"; someone asking for a fifth-order method wants one.
        same_order = [n for n, t in _REGISTRY.items() if t.order == int(m.group(1))]
        if same_order:
            return f" (did you mean {same_order[0]!r}?)"
    return did_you_mean(key, names)


def _register_builtins() -> None:
    """Register the built-in families, each in its own small module."""
    from rkcompile.tableaux import eighth_order, embedded, fourth_order, low_order

    for family in (low_order, fourth_order, embedded, eighth_order):
        for tableau in family.TABLEAUX:
            _add(tableau, "built in")


_register_builtins()
