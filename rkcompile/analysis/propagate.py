"""Costs without data: run the graph on meta tensors and record shapes, bytes, FLOPs and saved tensors.

`CostInterpreter` runs once in training mode with autograd on, so that the tensors each node saves for
backward are the ones autograd really saves (seen through `saved_tensors_hooks`, counted once per
storage), rather than guessed by per-op rules. Every value is kept alive during the run so that storage
identities stay unique; weights and buffers are not activations and are left out. `liveness` then turns
the recorded storages into static per-node live sets: `live_bytes`, the activation storages live while the
node runs, each from the node that creates it to the last user of any value aliasing it (a view shares its
base's storage and so costs nothing of its own; the network input counts while used); and `training_bytes`,
the union of that live set with every storage saved for backward so far.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import fx, nn
from torch.func import functional_call
from torch.utils import _pytree as pytree
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["CostInterpreter", "liveness", "meta_input"]


def meta_input(spec, batch: int, dtype: torch.dtype, device: str = "meta", generator=None) -> torch.Tensor:
    """An input tensor of the spec's shape: NCHW images, NF vectors, NCL signals, NLF tokens, NL token ids (int64)."""
    i = spec.input
    shape = i.tensor_shape(batch)
    if i.integer:
        if device == "meta":
            return torch.empty(shape, dtype=torch.long, device="meta")
        return torch.randint(0, i.vocabulary, shape, device=device, generator=generator)
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    return torch.randn(shape, dtype=dtype, device=device, generator=generator)


def _meta_like(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    out = torch.empty(t.shape, dtype=dtype if t.is_floating_point() else t.dtype, device="meta")
    return out.requires_grad_(t.requires_grad and out.is_floating_point())


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


class CostInterpreter(fx.Interpreter):
    """Run a GraphModule on meta tensors, recording each node's cost in `node.meta["cost"]`.

    The record holds `shape`, `dtype`, `bytes` (of storage the node newly creates; 0 for views),
    `storages` ({storage: bytes} the output refers to), `flops` (FlopCounterMode), and `saved`
    ({storage: bytes} first saved for backward while the node ran) with its total `saved_bytes`.
    """

    def __init__(self, module: fx.GraphModule, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(module, garbage_collect_values=False)
        tensors = dict(module.named_parameters(remove_duplicate=False))
        tensors.update(module.named_buffers(remove_duplicate=False))
        self.state = {name: _meta_like(t, dtype) for name, t in tensors.items()}
        self.fixed = {_key(t) for t in self.state.values()}
        self.seen = set(self.fixed)
        self.saved: dict[int, int] = {}
        self._node_saved: dict[int, int] = {}
        self._keep: list[torch.Tensor] = []

    def run(self, *args, **kwargs):
        """Run under a FLOP counter and saved-tensor hooks; BatchNorm and dropout in training mode."""
        was_training = self.module.training
        self.module.train()
        try:
            with FlopCounterMode(display=False) as self.counter, \
                    torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
                return super().run(*args, **kwargs)
        finally:
            self.module.train(was_training)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _key(t)
        if key not in self.fixed and key not in self.saved:
            self.saved[key] = self._node_saved[key] = t.untyped_storage().nbytes()
        self._keep.append(t)
        return t

    def run_node(self, n: fx.Node):
        flops, self._node_saved = self.counter.get_total_flops(), {}
        out = super().run_node(n)
        tensors = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        storages, new = {}, 0
        for t in tensors:
            key = _key(t)
            if key in self.fixed:
                continue
            storages[key] = t.untyped_storage().nbytes()
            if key not in self.seen:
                self.seen.add(key)
                new += storages[key]
        first = tensors[0] if tensors else None
        n.meta["cost"] = {
            "shape": tuple(first.shape) if first is not None else None,
            "dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
            "bytes": new,
            "storages": storages,
            "flops": self.counter.get_total_flops() - flops,
            "saved": dict(self._node_saved),
            "saved_bytes": sum(self._node_saved.values()),
        }
        return out

    def call_module(self, target, args, kwargs):
        prefix = f"{target}."
        state = {k[len(prefix):]: v for k, v in self.state.items() if k.startswith(prefix)}
        module = self.fetch_attr(target)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            # the kernel F.batch_norm calls, without its "more than 1 value per channel" check and without the
            # running-statistics update (whose unbiased variance divides by batch - 1), so a batch of one vector
            # can be costed; it saves what training really saves (input, batch mean, inverse std)
            return torch.batch_norm(args[0], state.get("weight"), state.get("bias"), None, None, True, 0.0,
                                    module.eps, False)
        return functional_call(module, state, args, kwargs)

    def get_attr(self, target, args, kwargs):
        if target in self.state:
            return self.state[target]
        value = super().get_attr(target, args, kwargs)
        return _meta_like(value, value.dtype) if isinstance(value, torch.Tensor) else value


def liveness(graph: fx.Graph) -> None:
    """Add `live_bytes` and `training_bytes` (live plus saved so far) to each cost record of a predicted graph."""
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    size: dict[int, int] = {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, n in enumerate(nodes):
        cost = n.meta.get("cost")
        if cost is None:
            continue
        end = max((index[u] for u in n.users), default=i)
        for key, nbytes in cost["storages"].items():
            size[key] = nbytes
            first.setdefault(key, i)
            last[key] = max(last.get(key, i), end)
    starts, ends = defaultdict(list), defaultdict(list)
    for key in size:
        starts[first[key]].append(key)
        ends[last[key]].append(key)
    live: set[int] = set()
    saved: dict[int, int] = {}
    saved_total = 0
    for i, n in enumerate(nodes):
        live.update(starts[i])
        cost = n.meta.get("cost")
        if cost is not None:
            for key, nbytes in cost["saved"].items():
                saved[key] = nbytes
                saved_total += nbytes
            inference = sum(size[k] for k in live)
            cost["live_bytes"] = inference
            cost["training_bytes"] = saved_total + sum(size[k] for k in live if k not in saved)
        live.difference_update(ends[i])
