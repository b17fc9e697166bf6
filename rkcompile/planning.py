"""`check` is planning: the network planned stage by stage with the builders the compiler uses, symbolically.

The plan holds every part's layers and shapes; the compiler materialises the same plan, so the shape rule
exists once (in `shapes.Planner`) and a spec that plans is a spec whose forward runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from rkcompile.entries import EntryContext, EntryPlan, plan_residual
from rkcompile.shapes import PartPlan, PlanError, Planner, Shape

__all__ = ["NetworkPlan", "StagePlan", "plan_network", "input_shape", "nearest_budgets"]


@dataclass(frozen=True)
class StagePlan:
    """A stage's entry (None: none), the shape its blocks integrate, and one F planned on that shape."""

    entry: EntryPlan | None
    shape: Shape
    function: PartPlan
    functions: tuple[PartPlan, ...] = ()  # an interleaved module's cycle (evaluation j calls j mod its length)


@dataclass(frozen=True)
class NetworkPlan:
    """The whole network: input shape, stem, stages and head, each part with its layers and shapes."""

    input: Shape
    stem: PartPlan | None
    stages: tuple[StagePlan, ...]
    head: PartPlan | None

    @property
    def output(self) -> Shape:
        """The shape the network returns (without batch)."""
        if self.head is not None:
            return self.head.shape
        return self.stages[-1].shape


def input_shape(spec) -> Shape:
    """The state shape of the spec's input."""
    i = spec.input
    if i.state == "image":
        return Shape(True, i.channels, i.height, i.width)
    if i.state == "signal":
        return Shape.signal(i.channels, i.length)
    if i.integer:  # token ids: the width is the vocabulary, until an embedding stem
        return Shape(False, i.vocabulary, i.length, 1, "ids")
    if i.state == "tokens":
        return Shape.tokens(i.length, i.features)
    return Shape(False, i.features)


def plan_network(spec) -> NetworkPlan:
    """Plan every part; the first part that does not fit raises a PlanError located in the spec."""
    shape = start = input_shape(spec)
    stem = None
    if spec.stem is not None:
        f = Planner(shape, ("stem",), numbered=spec.stem.numbered)
        spec.stem.plan(f)
        stem, shape = f.result(), f.shape
    stages = []
    for n, stage in enumerate(spec.stages):
        check = getattr(stage.tableau, "check_previous", None)  # history carried across a stage boundary
        if check is not None:
            check(spec.stages[n - 1] if n else None, stage, ("stages", n))
        stages.append(plan_stage(stage, shape, ("stages", n)))
        shape = stages[-1].shape
    head = None
    if spec.output is not None:
        f = Planner(shape, ("output",), numbered=False)
        spec.output.plan(f)
        head = f.result()
    return NetworkPlan(start, stem, tuple(stages), head)


def plan_stage(stage, shape: Shape, path: tuple) -> StagePlan:
    """Plan a stage's entry and its F (each member of an interleaved cycle) on the shape the entry leaves."""
    channels = shape.state in ("image", "signal")
    if stage.channels is not None and not channels:
        raise PlanError(f"'channels' is for image and signal states; this state is {shape.phrase()}: use 'features'",
                        path + ("channels",))
    if stage.features is not None and channels:
        raise PlanError(f"'features' is for vector and tokens states; this state is {shape.phrase()}: use 'channels'",
                        path + ("features",))
    ctx = EntryContext(shape, stage.width or shape.width, stage.module, path)
    entry = stage.entry.plan(ctx)
    shape = entry.shape if entry is not None else shape
    members = stage.module.cycle()
    where = path + ("module",)
    functions = tuple(stage.time.condition(plan_residual(m, shape, shape.width, 1, where + stage.module.member_path(j)),
                                           path + ("time",))
                      for j, m in enumerate(members))
    _check_options(stage, functions, path)
    return StagePlan(entry, shape, functions[0], functions)


def _check_options(stage, functions: tuple[PartPlan, ...], path: tuple) -> None:
    """`init.zero_last_norm` needs a norm layer in every F; a growing `drop_path` needs one F per evaluation;
    a step-size controller needs conv or linear weights in F to read."""
    from rkcompile.stage_options import NORMS

    if stage.step.controller != "none" and not any(op.kind in ("conv", "linear") for op in functions[0].ops):
        raise PlanError("a step-size controller reads the conv or linear weights of F; this F has none",
                        path + ("step", "controller"), compile=False)

    if stage.init.zero_last_norm:
        for j, plan in enumerate(functions):
            if not any(op.kind in NORMS or op.kind == "module" for op in plan.ops):
                member = f" ({stage.module.cycle()[j].kind})" if len(functions) > 1 else ""
                raise PlanError(f"zero-γ sets the scale of F's last norm layer to 0, but F{member} has no norm layer",
                                path + ("init", "zero_last_norm"), compile=False)
    rate = stage.drop_path
    if rate is not None and not rate.constant and stage.weights.kind != "per-evaluation":
        raise PlanError(f"a growing drop_path gives each F its own rate; with '{stage.weights.kind}' weights F's serve "
                        "many evaluations: use one rate (drop_path: P) or per-evaluation weights",
                        path + ("drop_path",), compile=False)


def nearest_budgets(evaluations: int, stages: int) -> list[int]:
    """The multiples of `stages` just below and above `evaluations` (positive ones only)."""
    low = evaluations // stages * stages
    return [v for v in (low, low + stages) if v > 0]
