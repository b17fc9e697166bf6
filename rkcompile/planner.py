"""The checkpoint planner: which groups of consecutive blocks to recompute so a training step fits a budget.

A dynamic programme over the network's units in order (Chen et al. 2016 solve the same problem for a chain
of layers by a sqrt(n) rule; here every block's bytes are known, so the choice is exact per spec). Its state
is the bytes held for backward so far; a unit either saves as usual, or a group of consecutive blocks of one
stage starting there keeps only its input and is recomputed in backward, which must then fit with what is
held before it (`rkcompile.analysis.checkpoint`). Of the plans that fit, the one recomputing the fewest FLOPs
wins. The unit-level bounds the programme uses are at least the analysis' prediction, so the chosen plan's
predicted peak always fits; the smallest budget any plan fits is found by bisection and is what a budget that
is too small is told.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch
from torch import fx

from rkcompile.analysis import predict
from rkcompile.analysis.checkpoint import UnitCost, checkpoint_costs, unit_costs
from rkcompile.analysis.report import human_bytes
from rkcompile.checkpointing import plain_overrides
from rkcompile.compiler import build
from rkcompile.errors import RkcompileError
from rkcompile.reversible import reversible_stages
from rkcompile.spec import Spec

__all__ = ["CheckpointPlan", "parse_bytes", "plan", "tradeoff"]

_BLOCK = re.compile(r"stage(\d+)\.block(\d+)")
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str | int) -> int:
    """A size such as "2GiB", "512 MiB", "1.5GB" or a plain number of bytes, as an int."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if m is None or m.group(2).lower() not in _UNITS:
            raise RkcompileError(f"budget {text!r} is not a size such as 2GiB, 512MiB, 1.5GB or a number of bytes")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise RkcompileError(f"budget must be positive, found {text!r}")
    return value


@dataclass(frozen=True)
class CheckpointPlan:
    """The chosen checkpoint groups of a spec at a batch size, with the predicted memory and recomputation."""

    name: str
    batch: int
    budget: int
    groups: tuple[tuple[int, int, int], ...]  # (stage, first block, last block)
    training_peak: int  # predicted, with these groups
    training_peak_without: int  # predicted, without checkpointing
    saved_bytes: int
    recompute_flops: int
    flops: int  # of one forward pass
    minimum: int  # the smallest budget some plan fits
    spec: Spec | None = field(repr=False, compare=False, default=None)

    def checkpoint_fields(self) -> dict[int, list[list[int]]]:
        """Per stage, its `checkpoint:` field value ([[first, last], ...])."""
        out: dict[int, list[list[int]]] = {}
        for n, first, last in self.groups:
            out.setdefault(n, []).append([first, last])
        return out

    def overrides(self) -> dict[str, object]:
        """`--set` overrides that write this plan into the spec (every stage: none where nothing is recomputed)."""
        assert self.spec is not None, "overrides need the plan's spec (plan and tradeoff always give it)"
        fields = self.checkpoint_fields()
        return {f"stages.{n}.checkpoint": fields.get(n) for n in range(len(self.spec.stages))}

    def summary(self) -> str:
        """Readable lines: budget, peak before and after, recomputation, and the groups per stage."""
        extra = self.recompute_flops / self.flops if self.flops else 0.0
        lines = [f"{self.name}: batch {self.batch}, budget {human_bytes(self.budget)} "
                 f"(smallest possible {human_bytes(self.minimum)})",
                 f"  training peak {human_bytes(self.training_peak_without)} -> {human_bytes(self.training_peak)}; "
                 f"saved for backward {human_bytes(self.saved_bytes)}",
                 f"  recomputed in backward: {self.recompute_flops / 1e9:,.3f} GFLOP "
                 f"({extra:.1%} of a forward pass)"]
        assert self.spec is not None, "the summary needs the plan's spec (plan and tradeoff always give it)"
        fields = self.checkpoint_fields()
        for n in range(len(self.spec.stages)):
            groups = fields.get(n)
            text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in groups) if groups else "none"
            if self.spec.stages[n].backprop == "reversible":
                lines.append(f"  stage {n}: reversible backprop (keeps its last two states)")
            else:
                lines.append(f"  stage {n}: checkpoint blocks {text}" if groups else f"  stage {n}: no checkpoint")
        return "\n".join(lines)


def plan(spec_or_path: Spec | str | Path | fx.GraphModule, budget: str | int, batch: int = 1,
         dtype: torch.dtype = torch.float32) -> CheckpointPlan:
    """Choose checkpoint groups so the predicted training peak at `batch` fits `budget` with the least recomputation."""
    limit = parse_bytes(budget)
    return _Planner(spec_or_path, batch, dtype).choose(limit)


def tradeoff(spec_or_path: Spec | str | Path | fx.GraphModule, batch: int = 1, points: int = 8,
             dtype: torch.dtype = torch.float32) -> list[CheckpointPlan]:
    """The memory-recompute curve: plans for `points` budgets evenly from the smallest possible to no checkpointing."""
    planner = _Planner(spec_or_path, batch, dtype)
    low, high = planner.minimum, planner.without.training_peak
    budgets = sorted({int(low + (high - low) * k / (points - 1)) for k in range(points)}) if points > 1 else [high]
    return [planner.choose(b) for b in budgets]


class _Planner:
    """One prediction of the network without checkpoints, planned against any number of budgets."""

    def __init__(self, spec_or_path: Spec | str | Path | fx.GraphModule, batch: int, dtype: torch.dtype) -> None:
        if batch < 1:
            raise RkcompileError(f"batch must be at least 1, found {batch}")
        # the compiler sets .spec on the models it builds; fx types module attributes as Tensor | Module
        spec = (cast(Spec, spec_or_path.spec) if isinstance(spec_or_path, fx.GraphModule)
                else cast(Spec, build(spec_or_path).spec))
        self.spec, self.batch = spec, batch
        self.plain = predict(build(spec, overrides=plain_overrides(spec)), batch, dtype)
        self.reversible = reversible_stages(spec)  # kept as they are: their blocks save nothing to checkpoint
        self.units, self.output = unit_costs(self.plain, self.reversible)
        # only Runge–Kutta blocks can be checkpointed (a multistep block hands on its history too)
        self.fixed = {str(n) for n, s in enumerate(spec.stages) if getattr(s.family, "name", "rk") != "rk"}
        self.without = checkpoint_costs(self.plain, [], self.reversible)
        self.flops = sum(u.flops for u in self.units)
        self.minimum = _minimum(self.units, self.output, self.without.training_peak, self.fixed)

    def choose(self, limit: int) -> CheckpointPlan:
        """The plan for one budget in bytes."""
        spec = self.spec
        if limit < self.minimum:
            raise RkcompileError(
                f"budget {human_bytes(limit)} is below the smallest training peak any checkpointing reaches for "
                f"{spec.name} at batch {self.batch}: {human_bytes(self.minimum)} ({self.minimum:,} bytes)")
        groups: tuple = ()
        if self.without.training_peak > limit:
            groups = _programme(self.units, self.output, limit, self.fixed)[1]
        costs = checkpoint_costs(self.plain, list(groups), self.reversible)
        return CheckpointPlan(spec.name, self.batch, limit, groups, costs.training_peak, self.without.training_peak,
                              costs.saved_bytes, sum(costs.recompute_flops.values()), self.flops, self.minimum, spec)


def _minimum(units: list[UnitCost], output: int, without: int, fixed: Collection[str] = ()) -> int:
    """The smallest budget the programme finds a plan for (bisection; feasibility grows with the budget)."""
    low, high = 0, without
    while high - low > max(1, high // 10**6):
        mid = (low + high) // 2
        if _programme(units, output, mid, fixed) is None:
            low = mid
        else:
            high = mid
    return high


def _programme(units: list[UnitCost], output: int, limit: int, fixed: Collection[str] = ()):
    """Least recomputed FLOPs over plans whose bound fits `limit`: (flops, groups), or None if none fits.

    No group starts in a stage of `fixed` (stage indices as text)."""
    blocks = [_BLOCK.fullmatch(u.label) for u in units]
    fronts: list[list[tuple[int, int, tuple]]] = [[] for _ in range(len(units) + 1)]
    fronts[0] = [(0, 0, ())]
    for u in range(len(units)):
        front = _pareto(fronts[u])
        fronts[u] = front
        unit = units[u]
        for held, flops, groups in front:
            if held + unit.forward <= limit:  # saved as usual
                fronts[u + 1].append((held + unit.saves, flops, groups))
            start = blocks[u]
            if start is None or start.group(1) in fixed:
                continue
            stage = start.group(1)
            kept = held + unit.input
            run, peak, live, cost = 0, 0, 0, 0
            for e in range(u, len(units)):
                end = blocks[e]
                if end is None or end.group(1) != stage:
                    break
                peak = max(peak, run + units[e].recompute)
                live = max(live, units[e].live)
                run += units[e].saves
                cost += units[e].flops
                if kept + output + peak > limit or kept + live > limit:
                    break  # a longer group only recomputes more at once
                group = (int(stage), int(start.group(2)), int(end.group(2)))
                fronts[e + 1].append((kept, flops + cost, (*groups, group)))
    final = [(f, h, g) for h, f, g in fronts[-1] if h + output <= limit]
    if not final:
        return None
    flops, _, groups = min(final, key=lambda s: (s[0], s[1]))
    return flops, groups


def _pareto(states: list[tuple[int, int, tuple]]) -> list[tuple[int, int, tuple]]:
    """States not beaten on both held bytes and recomputed FLOPs."""
    out, best = [], None
    for held, flops, groups in sorted(states, key=lambda s: (s[0], s[1])):
        if best is None or flops < best:
            out.append((held, flops, groups))
            best = flops
    return out
