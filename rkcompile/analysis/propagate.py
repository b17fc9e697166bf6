"""Costs without data: run the graph on meta tensors and record shapes, bytes, FLOPs and saved tensors.

`CostInterpreter` runs once in training mode with autograd on, so that the tensors each node saves for
backward are the ones autograd really saves (seen through `saved_tensors_hooks`, counted once per
storage), rather than guessed by per-op rules. Every value is kept alive during the run so that storage
identities stay unique; weights and buffers are not activations and are left out. `liveness` then turns
the recorded storages into static per-node live sets: `live_bytes`, the activation storages live while the
node runs, each from the node that creates it to the last user of any value aliasing it (a view shares its
base's storage and so costs nothing of its own; the network input counts while used); and `training_bytes`,
the union of that live set with every storage saved for backward so far.

Repeated blocks cost the same: a unit whose structure (`rkcompile.regional.structure_key`) and inputs (shapes,
dtypes, autograd flags, aliasing) match an earlier unit is not run again; its records are the earlier unit's,
with its own storages in place of the template's, so analysis time grows with the distinct structures.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import torch
from torch import fx, nn
from torch.func import functional_call
from torch.fx.passes.shape_prop import _extract_tensor_metadata
from torch.utils import _pytree as pytree

from rkcompile.analysis.flops import FlopCounter

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

    Also writes the standard `node.meta["tensor_meta"]` (torch.fx's `TensorMetadata`, as `ShapeProp` does).
    The record holds `shape`, `dtype`, `bytes` (of storage the node newly creates; 0 for views),
    `storages` ({storage: bytes} the output refers to), `flops` (torch's FLOP formulas: `FlopCounter`), and `saved`
    ({storage: bytes} first saved for backward while the node ran) with its total `saved_bytes`, and `saves`
    (every storage the node saves, saved before or not: what it would save once earlier nodes are recomputed).
    """

    def __init__(self, module: fx.GraphModule, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(module, garbage_collect_values=False)
        tensors: dict[str, torch.Tensor] = dict(module.named_parameters(remove_duplicate=False))
        tensors.update(module.named_buffers(remove_duplicate=False))
        self.state = {name: _meta_like(t, dtype) for name, t in tensors.items()}
        self.scoped: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)  # module path → its tensors by local name
        for name, t in self.state.items():
            parts = name.split(".")
            for i in range(1, len(parts)):
                self.scoped[".".join(parts[:i])][".".join(parts[i:])] = t
        self.fixed = {_key(t) for t in self.state.values()}
        self.seen = set(self.fixed)
        self.saved: dict[int, int] = {}
        self._packed: dict[int, int] = {}
        self._keep: list[torch.Tensor] = []
        self._units = _repeatable_units(module)  # first node → (nodes, structure key)
        self._templates: dict[tuple, _Template] = {}
        self._recording: _Template | None = None
        self._copied: dict[fx.Node, object] = {}
        self._fresh = itertools.count(-1, -1)  # storage keys of copied values that never exist

    def run(self, *args, **kwargs):
        """Run under a FLOP counter and saved-tensor hooks; BatchNorm and dropout in training mode."""
        was_training = self.module.training
        self.module.train()
        try:
            with FlopCounter() as self.counter, \
                    torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
                return super().run(*args, **kwargs)
        finally:
            self.module.train(was_training)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _key(t)
        if key not in self.fixed:
            self._packed[key] = t.untyped_storage().nbytes()
        self._keep.append(t)
        return t

    def run_node(self, n: fx.Node):
        if n in self._copied:
            return self._copied.pop(n)
        if n in self._units:
            nodes, structure = self._units[n]
            key = (structure, self._input_signature(nodes))
            template = self._templates.get(key)
            if template is not None and template.copyable():
                return self._copy(template, nodes)
            if template is None and key[1] is not None:
                self._recording = self._templates[key] = _Template(nodes, [self.env[a] for a in _inputs(nodes)])
        flops, self._packed = self.counter.total, {}
        out = super().run_node(n)
        tensors = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        storages = {_key(t): t.untyped_storage().nbytes() for t in tensors if _key(t) not in self.fixed}
        first = tensors[0] if tensors else None
        raw = {
            "shape": tuple(first.shape) if first is not None else None,
            "dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
            "storages": storages,
            "flops": self.counter.total - flops,
            "packed": dict(self._packed),
        }
        if tensors:  # the standard torch.fx shape record, as ShapeProp writes it, for other passes
            n.meta["tensor_meta"] = pytree.tree_map_only(torch.Tensor, _extract_tensor_metadata, out)
        self._record(n, raw)
        if self._recording is not None:
            self._recording.add(n, raw, out)
            if n is self._recording.nodes[-1]:
                self._recording = None
        return out

    def _record(self, n: fx.Node, raw: dict) -> None:
        """Write the cost record: storages first seen here are new bytes, storages first packed here are saved."""
        new = 0
        for key, nbytes in raw["storages"].items():
            if key not in self.seen:
                self.seen.add(key)
                new += nbytes
        saved = {key: nbytes for key, nbytes in raw["packed"].items() if key not in self.saved}
        self.saved.update(saved)
        n.meta["cost"] = {"shape": raw["shape"], "dtype": raw["dtype"], "bytes": new, "storages": raw["storages"],
                          "flops": raw["flops"], "saved": saved, "saved_bytes": sum(saved.values()),
                          "saves": dict(raw["packed"])}

    def _input_signature(self, nodes: list[fx.Node]) -> tuple | None:
        values = [self.env[a] for a in _inputs(nodes)]
        if not all(isinstance(v, torch.Tensor) for v in values):
            return None
        keys = [_key(v) for v in values]
        return tuple((tuple(v.shape), v.dtype, v.requires_grad, v.stride(), keys.index(k), k in self.fixed)
                     for v, k in zip(values, keys))

    def _copy(self, template: _Template, nodes: list[fx.Node]):
        """Record a repeated unit from its template; return the first node's value, stage the others'."""
        names = dict(zip(template.keys, (_key(self.env[a]) for a in _inputs(nodes))))
        values = {}
        for node, mine in zip(template.nodes, nodes):
            out = template.outputs.get(node)
            if out is not None:
                fresh = torch.empty_strided(out.shape, out.stride(), dtype=out.dtype, device="meta")
                fresh.requires_grad_(out.requires_grad)
                self._keep.append(fresh)
                names.setdefault(_key(out), _key(fresh))
                values[mine] = fresh
        for node, mine in zip(template.nodes, nodes):
            if "tensor_meta" in node.meta:  # same structure, same input signature: the same shapes
                mine.meta["tensor_meta"] = node.meta["tensor_meta"]
            raw = template.raw[node]
            rename = {key: names.setdefault(key, next(self._fresh)) for key in {*raw["storages"], *raw["packed"]}}
            self._record(mine, dict(raw, storages={rename[k]: b for k, b in raw["storages"].items()},
                                    packed={rename[k]: b for k, b in raw["packed"].items()}))
        self._copied.update({mine: values.get(mine) for mine in nodes[1:]})
        return values.get(nodes[0])

    def call_module(self, target, args, kwargs):
        state = self.scoped.get(target, {})
        module = self.fetch_attr(target)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            # what the kernel F.batch_norm calls does, without its "more than 1 value per channel" check and without
            # the running-statistics update (whose unbiased variance divides by batch - 1), so a batch of one vector
            # can be costed; it saves what training really saves (input, weight, batch mean, inverse std)
            return _MetaBatchNorm.apply(args[0], state.get("weight"), state.get("bias"))
        return functional_call(module, state, args, kwargs)

    def get_attr(self, target, args, kwargs):
        if target in self.state:
            return self.state[target]
        value = super().get_attr(target, args, kwargs)
        return _meta_like(value, value.dtype) if isinstance(value, torch.Tensor) else value


class _MetaBatchNorm(torch.autograd.Function):
    """Training-mode batch norm on meta tensors: its output and the tensors its backward saves, nothing computed.

    The same records as `torch.batch_norm(x, weight, bias, None, None, True, 0.0, eps, False)` on the meta device
    (tested), whose Python decomposition costs about 5 ms a call: an output like the input, and saved the input,
    the weight and the per-channel batch mean and inverse std (float32 for 16-bit inputs, as the meta kernel has it).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        """An output like `x`; saves x, weight, batch mean and inverse std."""
        stats = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        mean = torch.empty((x.shape[1],), dtype=stats, device=x.device)
        ctx.save_for_backward(x, weight, mean, torch.empty_like(mean))
        return torch.empty_like(x)

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - costs are predicted, never differentiated
        """Never called: the analysis runs forward only."""
        raise RuntimeError("predicted costs have no backward")


class _Template:
    """A unit run once: its nodes, raw records, input storage keys and the values read after it."""

    def __init__(self, nodes: list[fx.Node], inputs: list[torch.Tensor]) -> None:
        self.nodes = nodes
        self.keys = [_key(t) for t in inputs]
        self.raw: dict[fx.Node, dict] = {}
        self.outputs: dict[fx.Node, torch.Tensor] = {}
        self._inside = set(nodes)

    def add(self, node: fx.Node, raw: dict, out) -> None:
        """Keep a node's raw record, and its value when a later unit reads it."""
        self.raw[node] = raw
        if any(user not in self._inside for user in node.users):
            self.outputs[node] = out

    def copyable(self) -> bool:
        """Whether a copy can stand in: each value passed on is one dense tensor owning a storage of its own."""
        return len(self.raw) == len(self.nodes) and all(
            isinstance(t, torch.Tensor) and t.is_contiguous() and t.storage_offset() == 0
            and t.untyped_storage().nbytes() == t.numel() * t.element_size() and _key(t) not in self.keys
            for t in self.outputs.values())


def _inputs(nodes: list[fx.Node]) -> list[fx.Node]:
    inside = set(nodes)
    seen: dict[fx.Node, None] = {}  # an ordered set
    for node in nodes:
        for arg in node.all_input_nodes:
            if arg not in inside:
                seen.setdefault(arg, None)
    return list(seen)


def _repeatable_units(module: fx.GraphModule) -> dict[fx.Node, tuple[list[fx.Node], tuple]]:
    """Each unit's first node → (its nodes, structure key), for the units whose results can be copied.

    Models not built by the compiler (nodes outside any unit) are not grouped at all.
    """
    from rkcompile.errors import RkcompileError
    from rkcompile.regional import regions, structure_key

    try:
        found = regions(module)
    except RkcompileError:
        return {}
    units = {}
    signatures: dict[str, tuple] = {}
    for region in found:
        units[region.nodes[0]] = (region.nodes, structure_key(module, region, signatures))
    return units


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
    live_total = 0  # bytes of the live storages
    live_unsaved = 0  # bytes of the live storages not saved for backward (saved ones count once, in saved_total)
    for i, n in enumerate(nodes):
        for key in starts[i]:
            live.add(key)
            live_total += size[key]
            if key not in saved:
                live_unsaved += size[key]
        cost = n.meta.get("cost")
        if cost is not None:
            for key, nbytes in cost["saved"].items():
                if key in live and key not in saved:
                    live_unsaved -= size[key]
                saved[key] = nbytes
                saved_total += nbytes
            cost["live_bytes"] = live_total
            cost["training_bytes"] = saved_total + live_unsaved
        for key in ends[i]:
            live.discard(key)
            live_total -= size[key]
            if key not in saved:
                live_unsaved -= size[key]
