"""Outlining: a run of graph nodes copied into its own GraphModule (checkpoint groups, reversible blocks)."""

from __future__ import annotations

from torch import fx

__all__ = ["outline"]


def outline(module: fx.GraphModule, members: list[fx.Node], inputs: list[fx.Node], output: fx.Node,
            class_name: str) -> fx.GraphModule:
    """A GraphModule of `members` reading `inputs` (placeholders in order, metadata kept) and returning `output`."""
    sub = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for a in inputs:
        env[a] = sub.placeholder(a.name)
        env[a].meta = dict(a.meta)
    for m in members:
        missing = [a for a in m.all_input_nodes if a not in env]
        if missing:  # pragma: no cover - callers pass every value the run reads from outside it
            raise AssertionError(f"{m.name} reads {missing[0].name} from outside the outlined nodes")
        env[m] = sub.node_copy(m, env.__getitem__)
    sub.output(env[output])
    return fx.GraphModule(module, sub, class_name=class_name)
