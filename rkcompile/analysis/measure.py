"""Measured memory: one real forward (and backward) on CPU with random data, tracked per graph node.

`StorageTracker` is a TorchDispatchMode that registers the storage of every tensor an op returns and
drops it when the last such tensor dies (weakref finalizers), so its total is the activation storage
really alive; weights and buffers are ignored. Saved-for-backward storages are seen through
`saved_tensors_hooks` and, being kept by autograd, count as live until backward. `measure` works on a
copy of the model, so the caller's BatchNorm statistics and gradients are left untouched.
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import fx
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from rkcompile.analysis.propagate import meta_input
from rkcompile.checkpointing import recomputing

__all__ = ["StorageTracker", "MeasureInterpreter", "StepTracker", "measure", "measure_step"]


def _storage(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


class StorageTracker(TorchDispatchMode):
    """Track the bytes of activation storages alive (and saved for backward) as ops run."""

    def __init__(self, ignore: set[int]) -> None:
        super().__init__()
        self.ignore = ignore
        self.live: dict[int, list[int]] = {}  # storage → [bytes, tensors alive]
        self.saved: dict[int, int] = {}
        self.peak = 0

    def track(self, t: torch.Tensor) -> None:
        """Count `t`'s storage as live until `t` dies."""
        key, nbytes = _storage(t)
        if key in self.ignore or nbytes == 0:
            return
        self.live.setdefault(key, [nbytes, 0])[1] += 1
        weakref.finalize(t, self.release, key)

    def release(self, key: int) -> None:
        """One tensor on storage `key` died (or its holder let go of it)."""
        entry = self.live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self.live[key]

    def save(self, t: torch.Tensor) -> int:
        """Record `t` as saved for backward; return the bytes newly saved."""
        key, nbytes = _storage(t)
        if key in self.ignore or key in self.saved or nbytes == 0:
            return 0
        self.saved[key] = nbytes
        return nbytes

    def current(self) -> int:
        """Bytes of storage live or saved now."""
        return sum(self.saved.values()) + sum(b for k, (b, _) in self.live.items() if k not in self.saved)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.track(t)
        self.peak = max(self.peak, self.current())
        return out


class MeasureInterpreter(fx.Interpreter):
    """Run a GraphModule on real tensors, recording per node the peak tracked bytes and bytes saved."""

    def __init__(self, module: fx.GraphModule, tracker: StorageTracker) -> None:
        super().__init__(module)
        self.tracker = tracker
        self.peaks: dict[str, int] = {}
        self.saved: dict[str, int] = {}
        self._node: str | None = None
        self._input_key: int | None = None
        self._input_done: set[str] = set()

    def run(self, x: torch.Tensor):  # type: ignore[override]  # one input, the network's
        """Run on `x`, which the caller holds; it counts as live until its last user has run."""
        self.tracker.track(x)
        self._input_key = _storage(x)[0]
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        self._input_done = {max(p.users, key=order.__getitem__).name for p in placeholders if p.users}
        return super().run(x)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        """saved_tensors_hooks pack: count the storage once, attribute it to the running node."""
        if self._node is not None:
            self.saved[self._node] = self.saved.get(self._node, 0) + self.tracker.save(t)
        return t

    def run_node(self, n: fx.Node):
        self._node = n.name
        self.tracker.peak = self.tracker.current()
        out = super().run_node(n)
        self.peaks[n.name] = self.tracker.peak
        if n.name in self._input_done and self._input_key is not None:
            self.tracker.release(self._input_key)
        return out


def _copy(model: fx.GraphModule, dtype: torch.dtype):
    """(spec, a copy of `model` at `dtype`, the storages of its weights and buffers, which are not tracked)."""
    spec, copied = model.spec, copy.deepcopy(model).to(dtype)  # a GraphModule's deepcopy drops `spec`
    return spec, copied, {_storage(t)[0] for t in [*copied.parameters(), *copied.buffers()]}


def _inference(model: fx.GraphModule, tracker: StorageTracker, x: torch.Tensor) -> MeasureInterpreter:
    """One eval-mode forward without autograd under `tracker`; leaves the model in train mode."""
    model.eval()
    with torch.no_grad(), tracker:
        inference = MeasureInterpreter(model, tracker)
        inference.run(x)
    model.train()
    return inference


def measure(model: fx.GraphModule, batch: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:
    """Measure a copy of `model` (eval, then train + backward): {"inference_peak"|"training_peak"|"saved": {node: bytes}}."""
    spec, model, ignore = _copy(model, dtype)
    gen = torch.Generator().manual_seed(seed)
    x = meta_input(spec, batch, dtype, device="cpu", generator=gen)
    inference = _inference(model, StorageTracker(ignore), x)
    with StorageTracker(ignore) as tracker:
        training = MeasureInterpreter(model, tracker)
        with torch.autograd.graph.saved_tensors_hooks(training.pack, lambda t: t):
            out = training.run(x)
    out.float().sum().backward()
    return {"inference_peak": inference.peaks, "training_peak": training.peaks, "saved": training.saved}


class StepTracker(StorageTracker):
    """Track every activation storage alive through a whole training step, backward's recomputations
    included: in backward only the ops of checkpointed groups running again are tracked (with the copies
    checkpointing keeps of what they save), so gradients are left out, as in the prediction. Storages saved
    for backward outside any group stay alive until backward, whoever else lets go of them."""

    def __init__(self, ignore: set[int]) -> None:
        super().__init__(ignore)
        self.forward = True

    def current(self) -> int:
        """Bytes of tracked storages alive now (what autograd holds is alive)."""
        return sum(b for b, _ in self.live.values())

    def release(self, key: int) -> None:
        """Ignore the caller letting go of the network input while autograd still holds it."""
        if self.forward and key in self.saved:
            return
        super().release(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.forward or recomputing():
            for t in pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.track(t)
            self.peak = max(self.peak, self.current())
        return out


def measure_step(model: fx.GraphModule, batch: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:
    """Measure a copy of `model`'s whole training step (checkpointed groups recomputed in backward included):
    {"inference_peak", "saved_bytes" (held at the end of the forward pass), "training_peak"} in bytes."""
    spec, model, ignore = _copy(model, dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(meta_input(spec, batch, dtype).shape, generator=gen, dtype=dtype)
    inference = _inference(model, StepTracker(ignore), x)
    with StepTracker(ignore) as tracker:
        training = MeasureInterpreter(model, tracker)
        with torch.autograd.graph.saved_tensors_hooks(training.pack, lambda t: t):
            out = training.run(x)
        forward_peak = max(training.peaks.values())
        saved = tracker.current() - _storage(out)[1]
        tracker.forward, tracker.peak = False, tracker.current()
        out.float().sum().backward()
    return {"inference_peak": max(inference.peaks.values()), "saved_bytes": saved,
            "training_peak": max(forward_peak, tracker.peak)}
