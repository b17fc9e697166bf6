"""Analyses of a compiled network without data: parameters, inference and training memory, FLOPs per unit.

Memory model (README, "Memory: what each scheme really costs"): inference needs the live set — a value
lives from its node to its last user (torch.fx frees it there), views alias their base, and the network
input, held by the caller, counts while used. Training needs the storages autograd saves for backward,
accumulated as the forward runs, plus the forward live set. Both come from one run on meta tensors
(`CostInterpreter`); `measure=True` checks them against one real CPU run (`measure`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import fx

from rkcompile.analysis.measure import measure as measure_model
from rkcompile.analysis.propagate import CostInterpreter, liveness, meta_input
from rkcompile.analysis.report import BlockReport, Report, combine
from rkcompile.analysis.units import node_unit, parameter_owner, stage_of, units_in_order
from rkcompile.compiler import build
from rkcompile.errors import RkcompileError
from rkcompile.spec import Spec

__all__ = ["BlockReport", "Report", "analyze", "euler_manifestation", "predict"]


def analyze(model_or_spec: fx.GraphModule | Spec | str | Path, batch: int = 1, dtype: torch.dtype = torch.float32,
            measure: bool = False) -> Report:
    """Predict (and with `measure`, also measure) per-unit parameters, memory and FLOPs, with ratios to Euler."""
    model = model_or_spec if isinstance(model_or_spec, fx.GraphModule) else build(model_or_spec)
    if batch < 1:
        raise RkcompileError(f"batch must be at least 1, found {batch}")
    if measure and batch < 2 and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise RkcompileError("measuring a training step needs batch >= 2: batch norm cannot train on one sample")
    report = _report(model, batch, dtype, measure)
    spec = getattr(model, "spec", None)
    if spec is None:
        return report
    if all(stage.integrator == "euler" for stage in spec.stages):
        return report.with_relative(report)
    return report.with_relative(_report(euler_manifestation(spec), batch, dtype, False))


def euler_manifestation(spec: Spec) -> fx.GraphModule:
    """The same spec with every stage's integrator set to euler (its evaluations or steps kept)."""
    return build(spec, overrides={f"stages.{i}.integrator": "euler" for i in range(len(spec.stages))})


def predict(model: fx.GraphModule, batch: int = 1, dtype: torch.dtype = torch.float32) -> fx.GraphModule:
    """Record `node.meta["cost"]` (shape, bytes, FLOPs, saved, live and training bytes) on every node."""
    try:
        CostInterpreter(model, dtype).run(meta_input(model.spec, batch, dtype))
    except (RuntimeError, NotImplementedError) as e:  # a user module that needs data (e.g. `if x.sum() > 0`)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RkcompileError(f"cannot predict costs without data: a module needs real values ({reason})") from None
    liveness(model.graph)
    return model


def _report(model: fx.GraphModule, batch: int, dtype: torch.dtype, measure: bool) -> Report:
    predict(model, batch, dtype)
    measured = measure_model(model, batch, dtype) if measure else None
    itemsize = torch.empty((), dtype=dtype).element_size()
    owned: dict[str | None, list[int]] = {}
    for name, p in model.named_parameters():
        size = itemsize if p.is_floating_point() else p.element_size()
        entry = owned.setdefault(parameter_owner(name), [0, 0])
        entry[0] += p.numel()
        entry[1] += p.numel() * size
    groups: dict[str, list[fx.Node]] = {label: [] for label in units_in_order(model.graph)}
    for n in model.graph.nodes:
        if node_unit(n) is not None:
            groups[node_unit(n)].append(n)
    units = tuple(_unit_row(label, nodes, owned.pop(label, [0, 0]), measured) for label, nodes in groups.items())
    stages = []
    for s in range(len(model.spec.stages)):
        mine = [u for u in units if stage_of(u.label) == s]
        count, nbytes = owned.get(f"stage{s}", [0, 0])
        stages.append(combine(f"stage{s}", s, mine, count, nbytes))
    rest = [sum(v[0] for v in owned.values()), sum(v[1] for v in owned.values())]  # stage-owned and unowned
    total = combine("total", None, list(units), *rest)
    hidden = tuple(n.target for n in model.graph.nodes if n.meta.get("rk", {}).get("opaque"))
    return Report(model.spec.name, batch, str(dtype).removeprefix("torch."), units, tuple(stages), total, hidden)


def _unit_row(label: str, nodes: list[fx.Node], params: list[int], measured: dict | None) -> BlockReport:
    costs = [n.meta["cost"] for n in nodes]
    rk = nodes[0].meta["rk"]
    extra = {}
    if measured is not None:
        names = [n.name for n in nodes]
        extra = {
            "measured_inference_peak": max(measured["inference_peak"][m] for m in names),
            "measured_saved_bytes": sum(measured["saved"].get(m, 0) for m in names),
            "measured_training_peak": max(measured["training_peak"][m] for m in names),
        }
    return BlockReport(
        label, rk.get("stage"), rk.get("block"), params[0], params[1],
        inference_peak=max(c["live_bytes"] for c in costs),
        saved_bytes=sum(c["saved_bytes"] for c in costs),
        training_peak=max(c["training_bytes"] for c in costs),
        flops=sum(c["flops"] for c in costs),
        **extra,
    )
