"""Inlining a module's forward into the compiled graph (torch.fx symbolic trace), so analyses see each layer.

A module that cannot be traced (data-dependent control flow, unsupported Python) stays one `call_module` node
marked `opaque`: the analysis then reports that the temporaries inside it are hidden from its prediction.
Standard torch.nn layers and modules marked `rk_leaf = True` (the attention core, whose dropout depends on
`training`) stay single nodes: tracing would freeze a `self.training` test at its build-time value.
"""

from __future__ import annotations

from torch import fx, nn

from rkcompile.graphmeta import put
from rkcompile.modules import public

__all__ = ["trace", "inline"]


class _Tracer(fx.Tracer):
    """torch.nn layers and `rk_leaf` modules are leaves; everything else is traced through."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return getattr(m, "rk_leaf", False) or super().is_leaf_module(m, qualname)


def trace(module: nn.Module) -> fx.Graph | None:
    """The module's forward as a graph of one input and one tensor output, or None when it cannot be traced."""
    if getattr(module, "rk_leaf", False):
        return None
    try:
        graph = _Tracer().trace(module)
    except Exception:  # noqa: BLE001 - any tracing failure means "keep it as one node"
        return None
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    output = next(n for n in graph.nodes if n.op == "output")
    if len(inputs) != 1 or not isinstance(output.args[0], fx.Node):
        return None
    return graph


def inline(graph: fx.Graph, x: fx.Node, traced: fx.Graph, target: str, name: str, meta) -> fx.Node:
    """Copy `traced` into `graph` after `x`: submodule and attribute targets are prefixed with `target` (where the
    module is attached), node names with `name`; every node gets the NodeMeta `meta` with layer `{layer}.{node}`."""
    env: dict[fx.Node, fx.Node] = {}
    for node in traced.nodes:
        if node.op == "placeholder":
            env[node] = x
            continue
        if node.op == "output":
            return env[node.args[0]]
        args = fx.map_arg(node.args, env.__getitem__)
        kwargs = fx.map_arg(node.kwargs, env.__getitem__)
        op_target = f"{target}.{node.target}" if node.op in ("call_module", "get_attr") else public(node.target)
        new = graph.create_node(node.op, op_target, args, kwargs, name=f"{name}_{node.name}")
        put(new, meta.but(layer=f"{meta.layer}.{node.name}"))
        env[node] = new
    raise AssertionError("a traced graph ends with its output")
