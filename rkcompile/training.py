"""Transformations during training (refinement, Queiruga et al. 2020; multi-level cycles, Chang et al. 2018) in a plain PyTorch loop.

    schedule = Schedule(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9),
                        at={60: "interpolate", 110: "interpolate"}, epochs=160, lr_scheduler=cosine(0.001))
    for epoch in range(160):
        model, optimizer = schedule.begin_epoch(epoch)   # transforms at 60 and 110, new optimizer
        for x, y in loader:
            optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
        schedule.end_epoch()                               # steps the learning-rate scheduler, if any

At a transformation the optimizer is rebuilt over the new parameters by the same factory, and each new
parameter takes a copy of the optimizer state (momentum buffers, Adam moments and step counts) of the old
parameter it was copied from: one-to-one for renamed weights, a copy for each child piece or inserted block.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import fx

from rkcompile.errors import TransformError
from rkcompile.transforms import transform

__all__ = ["Schedule", "cosine", "carry_state"]

Event = str | tuple | Callable


class Schedule:
    """Applies transformations at given epochs, rebuilds the optimizer, carries its state, and restarts LR cycles.

    `at` maps an epoch to one event or a list: "refine", "interpolate", ("refine", {"factor": 2, ...}), or a
    callable model -> model (state carried by equal names and shapes). `optimizer(model)` builds an optimizer;
    `lr_scheduler(optimizer, cycle_epochs)` builds the scheduler of one cycle, whose length in epochs runs to
    the next event (or to `epochs`; None if unknown). With `reset_lr` false the learning rates and scheduler
    state continue across an event instead of starting a new cycle.
    """

    def __init__(self, model: fx.GraphModule, optimizer: Callable, at: Mapping[int, Event | list] | None = None,
                 epochs: int | None = None, lr_scheduler: Callable | None = None, reset_lr: bool = True) -> None:
        self.model = model
        self.make_optimizer, self.make_scheduler = optimizer, lr_scheduler
        self.at = {int(e): list(v) if isinstance(v, list) else [v] for e, v in (at or {}).items()}
        self.epochs, self.reset_lr = epochs, reset_lr
        self.history: list[tuple[int, str]] = []
        self.cycle_start = 0  # the epoch at which the current learning-rate cycle began
        self.optimizer = optimizer(model)
        self.lr_scheduler = self._scheduler(0)

    def begin_epoch(self, epoch: int) -> tuple[fx.GraphModule, torch.optim.Optimizer]:
        """Apply the events of `epoch` (if any) and return the current (model, optimizer)."""
        events = self.at.get(epoch, [])
        if events:
            old_model, old_optimizer, old_scheduler = self.model, self.optimizer, self.lr_scheduler
            sources = {name: name for name, _ in old_model.named_parameters()}
            model = old_model
            for event in events:
                model, step = _apply(model, event)
                sources = {new: sources[old] for new, old in step.items() if old in sources}
                self.history.append((epoch, _label(event)))
            self.model, self.optimizer = model, self.make_optimizer(model)
            carry_state(old_optimizer, self.optimizer, old_model, model, sources)
            if self.reset_lr:
                self.lr_scheduler = self._scheduler(epoch)
            else:
                for new, old in zip(self.optimizer.param_groups, old_optimizer.param_groups, strict=True):
                    new["lr"] = old["lr"]
                    if "initial_lr" in old:
                        new["initial_lr"] = old["initial_lr"]
                self.lr_scheduler = self._scheduler(epoch)
                if old_scheduler is not None and self.lr_scheduler is not None:
                    self.lr_scheduler.load_state_dict(old_scheduler.state_dict())
        return self.model, self.optimizer

    def end_epoch(self) -> None:
        """Step the learning-rate scheduler once (schedulers here count epochs)."""
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()

    def state_dict(self) -> dict:
        """The schedule's state as plain data and tensors (safe for `torch.load(weights_only=True)`): events applied,
        the optimizer, and the learning-rate cycle with its scheduler."""
        return {"history": [[epoch, label] for epoch, label in self.history], "cycle_start": self.cycle_start,
                "optimizer": self.optimizer.state_dict(),
                "lr_scheduler": None if self.lr_scheduler is None else self.lr_scheduler.state_dict()}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore `state_dict()` onto a Schedule built over the model it was saved with (e.g. to resume training)."""
        self.history = [(int(epoch), str(label)) for epoch, label in state["history"]]
        self.lr_scheduler = self._scheduler(int(state["cycle_start"]))  # before the optimizer: it resets the lr
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and state.get("lr_scheduler") is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])

    def _scheduler(self, epoch: int):
        self.cycle_start = epoch
        if self.make_scheduler is None:
            return None
        later = [e for e in self.at if e > epoch] if self.reset_lr else []  # else one cycle spans every event
        end = min(later) if later else self.epochs
        return self.make_scheduler(self.optimizer, None if end is None else end - epoch)


def cosine(eta_min: float = 0.0) -> Callable:
    """A cycle factory: cosine annealing from the optimizer's lr to `eta_min` over the cycle (Chang et al. 2018, eq. 9)."""

    def make(optimizer: torch.optim.Optimizer, cycle_epochs: int | None):
        if cycle_epochs is None:
            raise TransformError("cosine: the cycle's length is unknown; give the Schedule its total 'epochs'")
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cycle_epochs), eta_min=eta_min)

    return make


def carry_state(old: torch.optim.Optimizer, new: torch.optim.Optimizer, old_model, new_model,
                sources: Mapping[str, str]) -> int:
    """Copy per-parameter optimizer state to each new parameter from its source; return how many were carried."""
    old_params = dict(old_model.named_parameters())
    carried = 0
    for name, param in new_model.named_parameters():
        source = old_params.get(sources.get(name, ""))
        state = old.state.get(source) if source is not None else None
        if not state or source is None or source.shape != param.shape:  # no state without a source
            continue
        new.state[param] = {k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in state.items()}
        carried += 1
    return carried


def _apply(model, event) -> tuple[fx.GraphModule, dict[str, str]]:
    """Run one event; return the new model and {new parameter name: old parameter name}."""
    if isinstance(event, str):
        return transform(model, event)
    if isinstance(event, tuple) and len(event) == 2 and isinstance(event[0], str) and isinstance(event[1], Mapping):
        return transform(model, event[0], **event[1])
    if callable(event):
        new = event(model)
        old = dict(model.named_parameters())
        return new, {n: n for n, p in new.named_parameters() if n in old and old[n].shape == p.shape}
    raise TransformError(f"schedule: an event is a transformation name, (name, options) or a callable, "
                         f"found {type(event).__name__}")


def _label(event) -> str:
    if isinstance(event, str):
        return event
    if isinstance(event, tuple):
        return event[0]
    return getattr(event, "__name__", "callable")

