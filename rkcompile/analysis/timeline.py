"""Memory in execution order: live bytes at every graph node, forward and backward, predicted and measured.

Forward (from `predict`'s per-node records): the inference live set (`live_bytes`) and the training forward
(`training_bytes`: the live set plus everything saved for backward so far). Backward runs the nodes in reverse;
when the gradient of node i's output arrives, memory holds what nodes ≤ i saved (autograd frees a node's saved
tensors after its backward) and the gradients still pending: those of values v ≤ i whose users include a node
after i (gradients have their values' shapes; the network input and constants take none). With `measure`,
the same curves come from one real CPU run: `StorageTracker` in eval and in training mode, and, in backward, a
gradient hook on every node's output reading the tracker. PyTorch's memory viewer shows the same for a CUDA
allocator; this is per graph node and rkcompile unit, on any device.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import cast

import torch
from torch import fx

from rkcompile.analysis.measure import MeasureInterpreter, StorageTracker, _storage
from rkcompile.analysis.propagate import meta_input
from rkcompile.analysis.units import node_unit
from rkcompile.errors import RkcompileError

__all__ = ["Timeline", "timeline", "measure_backward"]


@dataclass(frozen=True)
class Timeline:
    """Bytes per graph node in execution order (forward) and in reverse order (backward), with unit labels."""

    name: str
    batch: int
    dtype: str
    nodes: tuple[str, ...]
    units: tuple[str | None, ...]
    inference: tuple[int, ...]
    forward: tuple[int, ...]
    backward: tuple[int, ...]  # backward[k] belongs to nodes[len(nodes) - 1 - k]
    measured_inference: tuple[int, ...] | None = None
    measured_forward: tuple[int, ...] | None = None
    measured_backward: tuple[int | None, ...] | None = None  # None where a node's output takes no gradient

    def boundaries(self) -> list[tuple[int, str]]:
        """(index of the first node, unit label) for each unit, in execution order."""
        out, last = [], None
        for i, unit in enumerate(self.units):
            if unit is not None and unit != last:
                out.append((i, unit))
                last = unit
        return out

    @property
    def inference_peak(self) -> int:
        """The largest inference live set."""
        return max(self.inference)

    @property
    def training_peak(self) -> int:
        """The largest bytes held in the training forward or in backward."""
        return max(max(self.forward), max(self.backward))


def timeline(model: fx.GraphModule, batch: int = 1, dtype: torch.dtype = torch.float32,
             measure: bool = False) -> Timeline:
    """The predicted (and with `measure`, measured) timeline of a compiled model."""
    from rkcompile.analysis import predict

    spec = getattr(model, "spec", None)
    reversible = [n for n, s in enumerate(spec.stages) if s.backprop == "reversible"] if spec is not None else []
    if reversible:
        raise RkcompileError(f"the timeline follows the graph node by node, but stage {reversible[0]} runs all its "
                             f"blocks as one node ('backprop: reversible'); draw it with "
                             f"--set stages.{reversible[0]}.backprop=saved, or read its peaks from analyze")
    predict(model, batch, dtype)
    nodes = [n for n in model.graph.nodes if "cost" in n.meta and n.op != "output"]
    costs = [n.meta["cost"] for n in nodes]
    measured = {}
    if measure:
        measured = _measured(model, nodes, batch, dtype)
    spec = getattr(model, "spec", None)
    return Timeline(getattr(spec, "name", type(model).__name__), batch, str(dtype).removeprefix("torch."),
                    tuple(n.name for n in nodes), tuple(node_unit(n) for n in nodes),
                    tuple(c["live_bytes"] for c in costs), tuple(c["training_bytes"] for c in costs),
                    tuple(_backward(nodes, model, dtype)), **measured)


def _backward(nodes: list[fx.Node], model: fx.GraphModule, dtype: torch.dtype) -> list[int]:
    """Predicted bytes when each node's output gradient arrives, in reverse execution order."""
    index = {n: i for i, n in enumerate(nodes)}
    itemsize = torch.empty((), dtype=dtype).element_size()
    saved = [n.meta["cost"]["saved_bytes"] for n in nodes]
    held = [sum(saved[: i + 1]) for i in range(len(nodes))]
    grads = [0] * (len(nodes) + 1)  # difference array: value v's gradient lives over [v, its last user]
    for v, n in enumerate(nodes):
        shape = n.meta["cost"]["shape"]
        if not _takes_gradient(n, model) or shape is None:
            continue
        last = max((index[u] for u in n.users if u in index), default=v)
        size = itemsize * int(torch.Size(shape).numel())
        grads[v] += size
        grads[last + 1] -= size
    out, running = [], 0
    for i in range(len(nodes)):
        running += grads[i]
        out.append(held[i] + running)
    return out[::-1]


def _takes_gradient(node: fx.Node, model: fx.GraphModule) -> bool:
    """Whether a value depends on a parameter, so that autograd computes its gradient (memoised on the node)."""
    if "takes_gradient" not in node.meta:
        own = False
        if node.op == "call_module":
            own = any(p.requires_grad for p in model.get_submodule(str(node.target)).parameters())
        elif node.op == "get_attr":
            value = _attr(model, str(node.target))
            own = isinstance(value, torch.nn.Parameter) and value.requires_grad
        node.meta["takes_gradient"] = own or any(_takes_gradient(a, model) for a in node.all_input_nodes)
    return node.meta["takes_gradient"]


def _attr(model: fx.GraphModule, target: str):
    value = model
    for part in target.split("."):
        value = getattr(value, part)
    return value


def measure_backward(model: fx.GraphModule, batch: int, dtype: torch.dtype = torch.float32,
                     seed: int = 0) -> dict[str, dict[str, int]]:
    """One real training forward and backward on CPU: {"forward": {node: peak}, "backward": {node: bytes}}."""
    spec, copy_ = model.spec, copy.deepcopy(model).to(dtype)
    for p in copy_.parameters():  # weight gradients exist up front and are accumulated in place: not activations
        p.grad = torch.zeros_like(p)
    ignore = {_storage(t)[0] for t in [*copy_.parameters(), *copy_.buffers(), *(cast(torch.Tensor, p.grad) for p in copy_.parameters())]}
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(meta_input(spec, batch, dtype).shape, generator=gen, dtype=dtype)
    arrivals: dict[str, int] = {}

    class Hooked(MeasureInterpreter):
        def arrived(self, name: str):
            def hook(grad: torch.Tensor) -> None:
                arrivals.setdefault(name, _live(self.tracker))
            return hook

        def run_node(self, n):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor) and out.requires_grad:
                out.register_hook(self.arrived(n.name))
            return out

    copy_.train()
    with StorageTracker(ignore) as tracker:
        run = Hooked(copy_, tracker)
        with torch.autograd.graph.saved_tensors_hooks(run.pack, lambda t: t):
            out = run.run(x)
        out.float().sum().backward()
    return {"forward": run.peaks, "backward": arrivals}


def _live(tracker: StorageTracker) -> int:
    """Bytes of activation storage alive now (saved tensors stay alive while autograd holds them)."""
    return sum(nbytes for nbytes, _ in tracker.live.values())


def _measured(model: fx.GraphModule, nodes: list[fx.Node], batch: int, dtype: torch.dtype) -> dict:
    from rkcompile.analysis.measure import measure

    inference = measure(model, batch, dtype)["inference_peak"]
    training = measure_backward(model, batch, dtype)
    names = [n.name for n in nodes]
    return {"measured_inference": tuple(inference.get(m, 0) for m in names),
            "measured_forward": tuple(training["forward"].get(m, 0) for m in names),
            "measured_backward": tuple(training["backward"].get(m) for m in reversed(names))}
