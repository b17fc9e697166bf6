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
from typing import cast

import torch
from torch import fx

from rkcompile import graphmeta, naming
from rkcompile.analysis.checkpoint import checkpoint_costs
from rkcompile.analysis.measure import measure as measure_model
from rkcompile.analysis.measure import measure_step
from rkcompile.analysis.optimizer import check_optimizer, gradient_bytes, optimizer_bytes
from rkcompile.analysis.propagate import CostInterpreter, liveness, meta_input
from rkcompile.analysis.report import BlockReport, Report, combine
from rkcompile.analysis.units import node_unit, stage_of
from rkcompile.checkpointing import groups_of, plain_overrides
from rkcompile.collector import collector_paused
from rkcompile.compiler import build
from rkcompile.errors import RkcompileError
from rkcompile.graphmeta import NodeMeta, Role
from rkcompile.limits import DEFAULT, Limits, estimate
from rkcompile.model import as_model
from rkcompile.reversible import reversible_stages
from rkcompile.spec import Spec
from rkcompile.summary import owned_parameters

__all__ = ["BlockReport", "Report", "analyze", "baseline_sentence", "euler_manifestation", "predict", "MAX_BATCH"]

#: Largest batch the analysis accepts (sizes stay far inside int64 on the meta device).
MAX_BATCH = 2**31 - 1


@collector_paused()
def analyze(model_or_spec: fx.GraphModule | Spec | str | Path, batch: int = 1, dtype: torch.dtype = torch.float32,
            measure: bool = False, *, optimizer: str = "sgd-momentum", limits: Limits | None = None) -> Report:
    """Predict (and with `measure`, also measure) per-unit parameters, memory and FLOPs, with ratios to Euler.

    The ratios compare with the Euler manifestation of equal evaluations per stage (`euler_manifestation`);
    `optimizer` (sgd, sgd-momentum, adam, adamw) sets the state counted in each row's `training_total`.
    A measured run is refused when its predicted training peak passes `limits.max_measure_bytes`.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise RkcompileError(f"batch must be at least 1 and at most {MAX_BATCH:,}, found {str(batch)[:40]}")
    check_optimizer(optimizer)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise RkcompileError(f"dtype must be a floating-point torch.dtype, found {str(dtype)[:40]}")
    model = as_model(model_or_spec, limits=limits, device=None if measure else "meta")  # predictions need no weights
    if measure:  # the arithmetic bound first: a forward holds at least its largest activation
        lower = estimate(model.spec).activation_bytes // 4 * torch.empty((), dtype=dtype).element_size() * batch
        _check_measure(lower, batch, limits or DEFAULT)
    if measure and batch < 2 and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise RkcompileError("measuring a training step needs batch >= 2: batch norm cannot train on one sample")
    report = _report(model, batch, dtype, measure, limits or DEFAULT, optimizer)
    spec = getattr(model, "spec", None)
    if spec is None:
        return report
    if all(stage.integrator == "euler" for stage in spec.stages):
        return report.with_relative(report)  # its own baseline: the table shows no ratio columns
    euler = _report(euler_manifestation(spec, limits, device="meta"), batch, dtype, False, limits or DEFAULT, optimizer)
    return report.with_relative(euler, baseline_sentence(spec, report, euler))


def baseline_sentence(spec: Spec, report: Report, euler: Report) -> str:
    """What the ratios compare with, in one sentence: the Euler network, its blocks per stage, its parameters."""
    names = [s.name for s in spec.stages]
    stages = ", ".join(f"{naming.display(naming.stage(i), names)} {s.total_evaluations} Euler step{'s' if s.total_evaluations > 1 else ''}"
                       f" for {s.blocks} {s.tableau.name} block{'s' if s.blocks > 1 else ''}"
                       for i, s in enumerate(spec.stages) if s.integrator != "euler")
    same = report.total.parameters == euler.total.parameters
    params = "at equal parameters" if same else (
        f"with {euler.total.parameters:,} parameters against {report.total.parameters:,} (per-block step sizes, "
        "controllers and coefficients scale with the number of blocks)")
    return (f"to the same network as forward Euler at equal evaluations of F per stage, {params} "
            f"({stages}; nothing checkpointed)")


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
    return build(spec, overrides={**changes, **plain_overrides(spec)}, limits=limits, device=device)


def predict(model: fx.GraphModule, batch: int = 1, dtype: torch.dtype = torch.float32) -> fx.GraphModule:
    """Record `node.meta["cost"]` (shape, bytes, FLOPs, saved, live and training bytes) on every node."""
    try:
        CostInterpreter(model, dtype).run(meta_input(model.spec, batch, dtype))
    except (RuntimeError, NotImplementedError) as e:  # a user module that needs data (e.g. `if x.sum() > 0`)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RkcompileError(f"cannot predict costs without data: a module needs real values ({reason})") from None
    liveness(model.graph)
    return model


def _report(model: fx.GraphModule, batch: int, dtype: torch.dtype, measure: bool, limits: Limits,
            optimizer: str = "sgd-momentum") -> Report:
    checkpoint_groups = groups_of(model.spec)
    reversible = reversible_stages(model.spec)
    if checkpoint_groups or reversible:
        return _checkpointed(model, checkpoint_groups, reversible, batch, dtype, measure, limits, optimizer)
    predict(model, batch, dtype)
    if measure:
        _check_measure(max((n.meta["cost"]["training_bytes"] for n in model.graph.nodes if "cost" in n.meta),
                           default=0), batch, limits)
    measured = measure_model(model, batch, dtype) if measure else None
    owned = _owned(model, dtype, optimizer)
    groups: dict[str, list[fx.Node]] = {}  # unit → its nodes, units in the order their first node runs
    for n in model.graph.nodes:
        unit = node_unit(n)
        if unit is not None:
            groups.setdefault(unit, []).append(n)
    costed = [n for n in model.graph.nodes if "cost" in n.meta]
    own, running = _training_by_unit(costed, lambda n: n.meta["cost"]["training_bytes"],
                                     lambda n: n.meta["cost"]["saved_bytes"])
    extra: dict[str, dict] = {label: {} for label in groups}
    if measured is not None:
        measured_own, _ = _training_by_unit(costed, lambda n: measured["training_peak"][n.name],
                                            lambda n: measured["saved"].get(n.name, 0))
        for label, nodes in groups.items():
            names = [n.name for n in nodes]
            extra[label] = {"measured_inference_peak": max(measured["inference_peak"][m] for m in names),
                            "measured_saved_bytes": sum(measured["saved"].get(m, 0) for m in names),
                            "measured_training_peak": measured_own[label]}
    units = tuple(_unit_row(label, nodes, owned.pop(label, {}), own[label], running[label], extra[label])
                  for label, nodes in groups.items())
    return _assemble(model, batch, dtype, optimizer, units, owned)


def _assemble(model: fx.GraphModule, batch: int, dtype: torch.dtype, optimizer: str, units: tuple[BlockReport, ...],
              owned: dict[str, dict[str, int]]) -> Report:
    """Stage and total rows around the unit rows; `owned` holds what no unit owns (stage-wide weights)."""
    spec = cast("Spec", model.spec)  # the compiler sets .spec; fx types module attributes as Tensor | Module
    stages = []
    for s in range(len(spec.stages)):
        mine = [u for u in units if stage_of(u.label) == s]
        stages.append(combine(naming.stage(s), s, mine, **owned.get(naming.stage(s), {})))
    rest = {f: sum(v.get(f, 0) for v in owned.values()) for f in _OWNED}  # stage-owned and unowned
    total = combine("total", None, list(units), **rest)
    hidden = tuple(n.target for n in model.graph.nodes if getattr(graphmeta.get(n), "opaque", False))
    return Report(spec.name, batch, str(dtype).removeprefix("torch."), units, tuple(stages), total, hidden,
                  stage_names=tuple(s.name for s in spec.stages), optimizer=optimizer)


_OWNED = ("parameters", "parameter_bytes", "buffer_bytes", "gradient_bytes", "optimizer_bytes")


def _owned(model: fx.GraphModule, dtype: torch.dtype, optimizer: str) -> dict[str, dict[str, int]]:
    """{owner unit: parameters, their bytes, buffer, gradient and optimizer-state bytes} at `dtype`."""
    itemsize = torch.empty((), dtype=dtype).element_size()

    def nbytes(t: torch.Tensor) -> int:
        return t.numel() * (itemsize if t.is_floating_point() else t.element_size())

    out: dict[str, dict[str, int]] = {}
    for label, (count, ps) in owned_parameters(model).items():
        out[label] = {"parameters": count, "parameter_bytes": sum(map(nbytes, ps)), "buffer_bytes": 0,
                      "gradient_bytes": gradient_bytes(ps, itemsize),
                      "optimizer_bytes": optimizer_bytes(ps, itemsize, optimizer)}
    for name, b in model.named_buffers():
        try:
            label = naming.owner(name)
        except RkcompileError:  # a buffer outside the path grammar (a user's module): counted in the total only
            label = ""
        row = out.setdefault(label, dict.fromkeys(_OWNED, 0))
        row["buffer_bytes"] += nbytes(b)
    return out


def _training_by_unit(nodes: list[fx.Node], training, saved) -> tuple[dict[str, int], dict[str, int]]:
    """Per unit: its own training peak (training bytes above what earlier units saved) and the running peak.

    `training(node)` is the bytes live or saved while the node runs, `saved(node)` what it newly saves.
    """
    own: dict[str, int] = {}
    running: dict[str, int] = {}
    start: dict[str, int] = {}
    before = worst = 0
    for n in nodes:
        unit = node_unit(n)
        here = training(n)
        worst = max(worst, here)
        if unit is not None:
            start.setdefault(unit, before)
            own[unit] = max(own.get(unit, 0), here - start[unit])
            running[unit] = worst
        before += saved(n)
    return own, running


def _check_measure(peak: int, batch: int, limits: Limits) -> None:
    """Refuse a real forward + backward predicted (or bounded below) to need more than the measure limit."""
    if peak > limits.max_measure_bytes:
        raise RkcompileError(f"a measured forward + backward at batch {batch} needs at least {peak:,} bytes, "
                             f"above the limit of {limits.max_measure_bytes:,}; lower --batch or raise it with "
                             "--max-measure BYTES (Python: limits=Limits(max_measure_bytes=N))")


def _unit_row(label: str, nodes: list[fx.Node], owned: dict[str, int], own: int, running: int,
              measured: dict) -> BlockReport:
    costs = [n.meta["cost"] for n in nodes]
    metas = [_unit_meta(n) for n in nodes]
    rk = metas[0]
    evaluations = {m.evaluation for m in metas if m.role is Role.EVAL}
    return BlockReport(
        label, rk.stage, "entry" if rk.entry else rk.block, owned.get("parameters", 0),
        owned.get("parameter_bytes", 0),
        inference_peak=max(c["live_bytes"] for c in costs),
        saved_bytes=sum(c["saved_bytes"] for c in costs),
        training_peak=own,
        flops=sum(c["flops"] for c in costs),
        evaluations=len(evaluations) if not rk.entry else 0,
        running_peak=running,
        buffer_bytes=owned.get("buffer_bytes", 0), gradient_bytes=owned.get("gradient_bytes", 0),
        optimizer_bytes=owned.get("optimizer_bytes", 0),
        **measured,
    )


def _unit_meta(node: fx.Node) -> NodeMeta:
    """The rk metadata of a node of a unit (`node_unit` placed it there, reading that metadata)."""
    meta = graphmeta.get(node)
    assert meta is not None, f"node {node.name!r} is in a unit, so the compiler recorded its metadata"
    return meta


def _checkpointed(model: fx.GraphModule, groups: list, reversible: list, batch: int, dtype: torch.dtype,
                  measure: bool, limits: Limits, optimizer: str) -> Report:
    """The report of a network with checkpointed groups or reversible stages: the same network's costs with
    ordinary backprop, with what is saved and the training peaks of `checkpoint_costs`; measured (whole
    training step) in the total row."""
    spec = cast("Spec", model.spec)  # the compiler sets .spec; fx types module attributes as Tensor | Module
    plain = build(spec, overrides=plain_overrides(spec), device="meta")  # predicted only: no weights
    report = _report(plain, batch, dtype, False, limits, optimizer)
    costs = checkpoint_costs(plain, groups, reversible)
    nodes: dict[str, list[str]] = {}
    costed = [n for n in plain.graph.nodes if n.name in costs.training]
    for n in costed:
        unit = node_unit(n)
        if unit is not None:
            nodes.setdefault(unit, []).append(n.name)
    own, running = _training_by_unit(costed, lambda n: costs.training[n.name], lambda n: costs.saved[n.name])

    def adjust(row: BlockReport) -> BlockReport:
        names = nodes.get(row.label, [])
        return replace(row, inference_peak=max((costs.inference[m] for m in names), default=0),
                       saved_bytes=sum(costs.saved[m] for m in names),
                       training_peak=own.get(row.label, 0), running_peak=running.get(row.label, 0),
                       recompute_flops=sum(costs.recompute_flops.get(m, 0) for m in names))

    units = tuple(adjust(u) for u in report.units)
    owned = _owned(plain, dtype, optimizer)
    for u in units:
        owned.pop(u.label, None)
    result = _assemble(plain, batch, dtype, optimizer, units, owned)
    total = result.total
    if measure:
        _check_measure(costs.training_peak, batch, limits)
        m = measure_step(model, batch, dtype)
        total = replace(total, measured_inference_peak=m["inference_peak"], measured_saved_bytes=m["saved_bytes"],
                        measured_training_peak=m["training_peak"])
    return replace(result, name=spec.name, total=total)
