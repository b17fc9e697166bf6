"""Activation checkpointing of groups of consecutive blocks: recomputed in backward instead of saved.

A stage's `checkpoint:` groups (block ranges [first, last]) are outlined from the compiled graph into one
small GraphModule each, called through `torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`:
the forward then keeps only each group's input for backward, and backward runs the group again to get the
tensors it needs. The outlined module shares the network's submodules and parameters (it is a plain
attribute, not a registered submodule, so parameters and the state dict are unchanged).
"""

from __future__ import annotations

import contextlib

import torch
from torch import fx, nn
from torch.utils.checkpoint import checkpoint

from rkcompile import graphmeta
from rkcompile.outlining import outline

__all__ = ["checkpoint_group", "groups_of", "outline_checkpoints", "plain_model", "plain_overrides", "recomputation", "recomputing"]

_recomputing = [0]  # depth of recomputations running now (read by the memory measurement)


def recomputing() -> bool:
    """True while backward is running a checkpointed group again."""
    return _recomputing[0] > 0


@contextlib.contextmanager
def recomputation():
    """Mark the ops run inside as backward running forward work again (checkpointed or reversible blocks)."""
    _recomputing[0] += 1
    try:
        yield
    finally:
        _recomputing[0] -= 1


def checkpoint_group(function, *args):
    """Run `function(*args)` under non-reentrant checkpointing when autograd records, else directly."""
    if torch.is_grad_enabled():
        return checkpoint(_Recomputed(function), *args, use_reentrant=False)
    return function(*args)


class _Recomputed:
    """The group's function; when backward runs it again, batch-norm running statistics are left as the
    forward pass left them (a recomputation must not count the batch twice)."""

    def __init__(self, function) -> None:
        self.function = function
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls == 1:
            return self.function(*args)
        buffers = [b for m in self.function.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                   for b in m.buffers()]
        kept = [b.clone() for b in buffers]
        _recomputing[0] += 1
        try:
            return self.function(*args)
        finally:  # also when checkpointing stops the recomputation early (it raises to do so)
            _recomputing[0] -= 1
            with torch.no_grad():
                for b, v in zip(buffers, kept, strict=True):
                    b.copy_(v)


def groups_of(spec) -> list[tuple[int, int, int]]:
    """(stage, first block, last block) of every checkpointed group of the spec, in network order."""
    out = []
    for n, stage in enumerate(spec.stages):
        for first, last in stage.checkpoint or ():
            out.append((n, first, last))
    return out


def plain_model(model: fx.GraphModule) -> fx.GraphModule:
    """`model` itself, or when it checkpoints groups or has reversible stages the same network compiled with
    ordinary backprop (one node per layer, for reading its structure; its weights are freshly initialised)."""
    spec = getattr(model, "spec", None)
    if spec is None or not (groups_of(spec) or any(s.backprop != "saved" for s in spec.stages)):
        return model
    from rkcompile.compiler import build

    return build(spec, overrides=plain_overrides(spec))


def plain_overrides(spec) -> dict:
    """Overrides that compile `spec` with ordinary backprop: no checkpoint groups, no reversible stages."""
    out: dict[str, object] = {f"stages.{n}.checkpoint": None for n in range(len(spec.stages))}
    out.update({f"stages.{n}.backprop": None for n, s in enumerate(spec.stages) if s.backprop != "saved"})
    return out


def outline_checkpoints(module: fx.GraphModule, groups: list[tuple[int, int, int]]) -> fx.GraphModule:
    """Replace each group's nodes by one call of `checkpoint_group` on an outlined GraphModule (in place)."""
    from rkcompile.analysis.units import node_unit  # the analysis package imports this module

    graph = module.graph
    for n, first, last in groups:
        labels = {f"stage{n}.block{b}" for b in range(first, last + 1)}
        members = [node for node in graph.nodes if node_unit(node) in labels]
        inside = set(members)
        inputs = list(dict.fromkeys(a for m in members for a in m.all_input_nodes if a not in inside))
        outputs = [m for m in members if any(u not in inside for u in m.users)]
        if len(outputs) != 1:  # pragma: no cover - a block's only value used later is its output y_{n+1}
            raise AssertionError(f"group stage{n}.block{first}-{last} has {len(outputs)} outputs")
        name = f"stage{n}_checkpoint{first}_{last}"
        object.__setattr__(module, name, outline(module, members, inputs, outputs[0], f"Stage{n}Blocks{first}To{last}"))
        with graph.inserting_before(members[0]):
            function = graph.get_attr(name)
            call = graph.call_function(checkpoint_group, (function, *inputs), name=f"{name}_call")
        first_meta = graphmeta.get(outputs[0])
        assert first_meta is not None, "every node the compiler emits carries its NodeMeta"
        rk = first_meta.but(role=graphmeta.Role.CHECKPOINT, block=first, evaluation=None,
                                            layer=f"blocks {first}-{last}")
        graphmeta.put(function, rk)
        graphmeta.put(call, rk)
        outputs[0].replace_all_uses_with(call)
        for m in reversed(members):
            graph.erase_node(m)
    graph.lint()
    module.recompile()
    return module
