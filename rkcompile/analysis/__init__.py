"""Analyses of a compiled network without data: parameters, inference and training memory, FLOPs per unit.

Memory model (README, "Memory: what each scheme really costs"): inference needs the live set — a value
lives from its node to its last user (torch.fx frees it there), views alias their base, and the network
input, held by the caller, counts while used. Training needs the storages autograd saves for backward,
accumulated as the forward runs, plus the forward live set. Both come from one run on meta tensors
(`CostInterpreter`); `measure=True` checks them against one real CPU run (`measure`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import fx

from rkcompile import graphmeta, naming
from rkcompile.analysis.checkpoint import checkpoint_costs
from rkcompile.analysis.measure import measure as measure_model
from rkcompile.analysis.measure import measure_step
from rkcompile.analysis.propagate import CostInterpreter, liveness, meta_input
from rkcompile.analysis.report import BlockReport, Report, combine
from rkcompile.analysis.units import node_unit, stage_of, units_in_order
from rkcompile.checkpointing import groups_of
from rkcompile.compiler import build
from rkcompile.errors import RkcompileError
from rkcompile.limits import DEFAULT, Limits, estimate
from rkcompile.model import as_model
from rkcompile.spec import Spec
from rkcompile.summary import owned_parameters

__all__ = ["BlockReport", "Report", "analyze", "euler_manifestation", "predict", "MAX_BATCH"]

#: Largest batch the analysis accepts (sizes stay far inside int64 on the meta device).
MAX_BATCH = 2**31 - 1


def analyze(model_or_spec: fx.GraphModule | Spec | str | Path, batch: int = 1, dtype: torch.dtype = torch.float32,
            measure: bool = False, *, limits: Limits | None = None) -> Report:
    """Predict (and with `measure`, also measure) per-unit parameters, memory and FLOPs, with ratios to Euler.

    The ratios compare with the Euler manifestation of equal evaluations per stage (`euler_manifestation`).
    A measured run is refused when its predicted training peak passes `limits.max_measure_bytes`.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise RkcompileError(f"batch must be at least 1 and at most {MAX_BATCH:,}, found {str(batch)[:40]}")
    model = as_model(model_or_spec, limits=limits, device=None if measure else "meta")  # predictions need no weights
    if measure:  # the arithmetic bound first: a forward holds at least its largest activation
        lower = estimate(model.spec).activation_bytes // 4 * torch.empty((), dtype=dtype).element_size() * batch
        _check_measure(lower, batch, limits or DEFAULT)
    if measure and batch < 2 and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise RkcompileError("measuring a training step needs batch >= 2: batch norm cannot train on one sample")
    report = _report(model, batch, dtype, measure, limits or DEFAULT)
    spec = getattr(model, "spec", None)
    if spec is None:
        return report
    if all(stage.integrator == "euler" for stage in spec.stages):
        return report.with_relative(report)
    return report.with_relative(_report(euler_manifestation(spec, limits, device="meta"), batch, dtype, False,
                                        limits or DEFAULT))


def euler_manifestation(spec: Spec, limits: Limits | None = None, device=None) -> fx.GraphModule:
    """The same spec integrated by Euler with equal evaluations per stage (so equal parameters in every mode),
    nothing checkpointed: the plain baseline.

    A stage given by `evaluations` keeps its budget; a stage given by `steps` gets steps x (evaluations per
    step) Euler steps, so a 4-step RK4 stage compares with 16 Euler steps, not 4. `device="meta"` builds it
    without weights.
    """
    changes: dict[str, object] = {}
    for i, stage in enumerate(spec.stages):
        changes[f"stages.{i}.integrator"] = "euler"
        if stage.steps is not None:
            changes[f"stages.{i}.steps"] = stage.total_evaluations
    return build(spec, overrides={**changes, **_no_checkpoints(spec)}, limits=limits, device=device)


def _no_checkpoints(spec: Spec) -> dict:
    return {f"stages.{i}.checkpoint": None for i in range(len(spec.stages))}


def predict(model: fx.GraphModule, batch: int = 1, dtype: torch.dtype = torch.float32) -> fx.GraphModule:
    """Record `node.meta["cost"]` (shape, bytes, FLOPs, saved, live and training bytes) on every node."""
    try:
        CostInterpreter(model, dtype).run(meta_input(model.spec, batch, dtype))
    except (RuntimeError, NotImplementedError) as e:  # a user module that needs data (e.g. `if x.sum() > 0`)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RkcompileError(f"cannot predict costs without data: a module needs real values ({reason})") from None
    liveness(model.graph)
    return model


def _report(model: fx.GraphModule, batch: int, dtype: torch.dtype, measure: bool, limits: Limits) -> Report:
    groups = groups_of(model.spec)
    if groups:
        return _checkpointed(model, groups, batch, dtype, measure, limits)
    predict(model, batch, dtype)
    if measure:
        _check_measure(max((n.meta["cost"]["training_bytes"] for n in model.graph.nodes if "cost" in n.meta),
                           default=0), batch, limits)
    measured = measure_model(model, batch, dtype) if measure else None
    itemsize = torch.empty((), dtype=dtype).element_size()
    owned = {label: [count, sum(p.numel() * (itemsize if p.is_floating_point() else p.element_size()) for p in ps)]
             for label, (count, ps) in owned_parameters(model).items()}
    groups: dict[str, list[fx.Node]] = {label: [] for label in units_in_order(model.graph)}
    for n in model.graph.nodes:
        if node_unit(n) is not None:
            groups[node_unit(n)].append(n)
    units = tuple(_unit_row(label, nodes, owned.pop(label, [0, 0]), measured) for label, nodes in groups.items())
    stages = []
    for s in range(len(model.spec.stages)):
        mine = [u for u in units if stage_of(u.label) == s]
        count, nbytes = owned.get(naming.stage(s), [0, 0])
        stages.append(combine(naming.stage(s), s, mine, count, nbytes))
    rest = [sum(v[0] for v in owned.values()), sum(v[1] for v in owned.values())]  # stage-owned and unowned
    total = combine("total", None, list(units), *rest)
    hidden = tuple(n.target for n in model.graph.nodes if getattr(graphmeta.get(n), "opaque", False))
    return Report(model.spec.name, batch, str(dtype).removeprefix("torch."), units, tuple(stages), total, hidden)


def _check_measure(peak: int, batch: int, limits: Limits) -> None:
    """Refuse a real forward + backward predicted (or bounded below) to need more than the measure limit."""
    if peak > limits.max_measure_bytes:
        raise RkcompileError(f"a measured forward + backward at batch {batch} needs at least {peak:,} bytes, "
                             f"above the limit of {limits.max_measure_bytes:,}; lower --batch or raise it with "
                             "--max-measure BYTES (Python: limits=Limits(max_measure_bytes=N))")


def _unit_row(label: str, nodes: list[fx.Node], params: list[int], measured: dict | None) -> BlockReport:
    costs = [n.meta["cost"] for n in nodes]
    rk = graphmeta.get(nodes[0])
    extra = {}
    if measured is not None:
        names = [n.name for n in nodes]
        extra = {
            "measured_inference_peak": max(measured["inference_peak"][m] for m in names),
            "measured_saved_bytes": sum(measured["saved"].get(m, 0) for m in names),
            "measured_training_peak": max(measured["training_peak"][m] for m in names),
        }
    return BlockReport(
        label, rk.stage, "entry" if rk.entry else rk.block, params[0], params[1],
        inference_peak=max(c["live_bytes"] for c in costs),
        saved_bytes=sum(c["saved_bytes"] for c in costs),
        training_peak=max(c["training_bytes"] for c in costs),
        flops=sum(c["flops"] for c in costs),
        **extra,
    )


def _checkpointed(model: fx.GraphModule, groups: list, batch: int, dtype: torch.dtype, measure: bool,
                  limits: Limits) -> Report:
    """The report of a network with checkpointed groups: the same network's costs without them, with what is
    saved and the training peaks of `checkpoint_costs`; measured (whole training step) in the total row."""
    plain = build(model.spec, overrides=_no_checkpoints(model.spec), device="meta")  # predicted only: no weights
    report = _report(plain, batch, dtype, False, limits)
    costs = checkpoint_costs(plain, groups)
    nodes: dict[str, list[str]] = {}
    for n in plain.graph.nodes:
        if node_unit(n) is not None and n.name in costs.training:
            nodes.setdefault(node_unit(n), []).append(n.name)

    def adjust(row: BlockReport) -> BlockReport:
        names = nodes.get(row.label, [])
        return replace(row, inference_peak=max((costs.inference[m] for m in names), default=0),
                       saved_bytes=sum(costs.saved[m] for m in names),
                       training_peak=max((costs.training[m] for m in names), default=0),
                       recompute_flops=sum(costs.recompute_flops.get(m, 0) for m in names))

    units = tuple(adjust(u) for u in report.units)
    stages = tuple(combine(s.label, s.stage, [u for u in units if stage_of(u.label) == s.stage],
                           s.parameters - sum(u.parameters for u in report.units if stage_of(u.label) == s.stage),
                           s.parameter_bytes - sum(u.parameter_bytes for u in report.units
                                                   if stage_of(u.label) == s.stage))
                   for s in report.stages)
    t = report.total
    total = combine("total", None, list(units), t.parameters - sum(u.parameters for u in units),
                    t.parameter_bytes - sum(u.parameter_bytes for u in units))
    if measure:
        _check_measure(costs.training_peak, batch, limits)
        m = measure_step(model, batch, dtype)
        total = replace(total, measured_inference_peak=m["inference_peak"], measured_saved_bytes=m["saved_bytes"],
                        measured_training_peak=m["training_peak"])
    return replace(report, units=units, stages=stages, total=total)
