"""rkcompile: declarative YAML specs of residual networks as Runge–Kutta integrators, compiled to torch.fx.

The public names are imported lazily (PEP 562), so `import rkcompile` and the spec-only commands
(`rkcompile check`, `rkcompile schema`) never import torch.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

#: public name → the module that defines it
_WHERE = {
    "ArtifactError": "rkcompile.errors",
    "CompileError": "rkcompile.errors",
    "RkcompileError": "rkcompile.errors",
    "SpecError": "rkcompile.errors",
    "TableauError": "rkcompile.errors",
    "TransformError": "rkcompile.errors",
    "ExportError": "rkcompile.errors",
    "RkcompileWarning": "rkcompile.errors",
    "export": "rkcompile.export",
    "FileError": "rkcompile.files",
    "BlockReport": "rkcompile.analysis",
    "Report": "rkcompile.analysis",
    "analyze": "rkcompile.analysis",
    "load": "rkcompile.artifact",
    "save": "rkcompile.artifact",
    "build": "rkcompile.compiler",
    "compile": "rkcompile.regional",
    "Limits": "rkcompile.limits",
    "load_spec": "rkcompile.load",
    "CheckpointPlan": "rkcompile.planner",
    "plan": "rkcompile.planner",
    "tradeoff": "rkcompile.planner",
    "parse_spec": "rkcompile.load",
    "Spec": "rkcompile.spec",
    "Stage": "rkcompile.spec",
    "Tableau": "rkcompile.tableau",
    "get_tableau": "rkcompile.tableaux",
    "list_tableaux": "rkcompile.tableaux",
    "register_tableau": "rkcompile.tableaux",
    "LinearMultistep": "rkcompile.multistep",
    "register_multistep": "rkcompile.multistep",
    "ResidualFunction": "rkcompile.functions",
    "register_module": "rkcompile.functions",
    "fold_step_sizes": "rkcompile.transforms",
    "interpolate": "rkcompile.transforms",
    "refine": "rkcompile.transforms",
    "project": "rkcompile.projection",
    "remanifest": "rkcompile.transforms",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    """Import a public name's module on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        try:  # a submodule, e.g. rkcompile.interop
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'rkcompile' has no attribute '{name}'") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, for tab completion."""
    return sorted({*globals(), *_WHERE})


class _Package(types.ModuleType):
    """Keeps public names that share a submodule's name (`load`: the function, not rkcompile/load.py).

    Importing a submodule sets it as an attribute of its package; with lazy imports that would replace
    `rkcompile.load` (the artifact loader) by the module rkcompile.load, so such a set is ignored.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and name in _WHERE:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
