"""A compiled model from whatever names one (a GraphModule, a Spec, a spec path, a saved MODEL.pt), and its size."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from torch import fx, nn

if TYPE_CHECKING:
    from rkcompile.spec import Spec

__all__ = ["as_model", "parameter_count", "graph_size"]


def as_model(source, overrides=None, *, limits=None, device=None) -> fx.GraphModule:
    """A compiled GraphModule from a GraphModule, a Spec, a spec path or a `.pt` artifact; `overrides` recompile its spec.

    `device` is where a network compiled here is built (`"meta"`: no weights initialised, for analysis and
    drawing); a GraphModule or a loaded artifact is returned as it is.
    """
    from rkcompile.compiler import build

    if isinstance(source, (str, Path)) and Path(source).suffix == ".pt":
        from rkcompile.artifact import load

        source = load(source, limits=limits)
    if isinstance(source, fx.GraphModule):
        spec = cast("Spec", source.spec)  # the compiler sets .spec; fx types module attributes as Tensor | Module
        return build(spec, overrides=overrides, limits=limits, device=device) if overrides else source
    return build(source, overrides=overrides, limits=limits, device=device)


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (elements) of a model."""
    return sum(p.numel() for p in model.parameters())


def graph_size(model: fx.GraphModule) -> int:
    """Number of nodes in a model's fx graph."""
    return len(model.graph.nodes)
