"""Time-conditioned F: how a stage's residual function receives the time t of its evaluation, F(y, t).

A neural ODE's F may depend on t (Chen et al. 2018; Grathwohl et al. 2019 (FFJORD)); in rkcompile F sees the
time the integrator evaluates it at, t_n + c_i·h for an RK stage (t_n for a multistep step), measured from the
stage's start as θ(t) is, and exactly the time the drawings label. A kind rewrites F's planned layers (no
torch here, so `check` and `schema` stay light):

- `concat`: t joins the input of every conv and linear layer of F as one extra constant channel (images,
  signals: torchdiffeq's ConcatConv2d) or feature (vectors, and each token of a sequence);
- `film`: a small learned map t → (γ, β) (Linear(1, hidden) → act → Linear(hidden, 2·width)) scales and shifts
  the output of every norm layer of F, x·(1 + γ(t)) + β(t) (Perez et al. 2018 (FiLM)); an F without norms is
  modulated after each hidden conv or linear layer instead. The map's last layer starts at zero, so a film F
  starts as the plain F.

Either adds parameters to each F only, so counts still depend on the weight mode alone, not on the scheme.
A user module runs its own forward, which rkcompile cannot give t: both kinds refuse it. Register a new kind
in `TIMES`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Literal

from rkcompile.fields import Activation, Model, PositiveInt
from rkcompile.registry import Registry
from rkcompile.shapes import Op, PartPlan, PlanError

__all__ = ["TIMES", "TimeInput", "NoTime", "ConcatTime", "FilmTime", "register_time"]

TIMES: Registry[type[TimeInput]] = Registry("time input")

#: Layers whose input `concat` widens by one.
_WEIGHTED = ("conv", "linear")
_NORMS = ("batchnorm", "groupnorm", "layernorm", "rmsnorm")


class TimeInput(Model):
    """Base of time-input kinds: `condition` rewrites a planned F so that its layers read t."""

    kind: str
    example: ClassVar[dict] = {}

    def condition(self, plan: PartPlan, path: tuple) -> PartPlan:
        """F's plan with the layers that read t (`path` locates errors at the stage's `time`)."""
        raise NotImplementedError

    @property
    def active(self) -> bool:
        """True when F receives t."""
        return True

    def label(self) -> str:
        """How tables name this kind."""
        return self.kind


register_time = TIMES.register_kind  # a class decorator: registers a TimeInput subclass under its kind


@register_time
class NoTime(TimeInput):
    """F(y) does not see t (the default; a ContinuousNet basis still makes its weights depend on t)."""

    kind: Literal["none"]
    example: ClassVar[dict] = {"kind": "none"}

    def condition(self, plan: PartPlan, path: tuple) -> PartPlan:
        """F unchanged."""
        return plan

    @property
    def active(self) -> bool:
        """F does not receive t."""
        return False


def _channel_dim(op: Op) -> int:
    """Where a state keeps its channels or features: dim 1 for images and signals, the last dim otherwise."""
    return 1 if op.shape_in.state in ("image", "signal") else -1


def _refuse_user_modules(plan: PartPlan, kind: str, path: tuple) -> None:
    for op in plan.ops:
        if op.kind == "module" and dict(op.args).get("inline"):
            raise PlanError(f"time: {kind} gives t to F's own layers, but user module '{op.label or op.name}' runs "
                            "its own forward, which cannot receive t; use 'time: none'", path)


@register_time
class ConcatTime(TimeInput):
    """t as one more input channel or feature of every conv and linear layer of F (torchdiffeq's ConcatConv2d)."""

    kind: Literal["concat"]
    example: ClassVar[dict] = {"kind": "concat"}

    def condition(self, plan: PartPlan, path: tuple) -> PartPlan:
        """Each conv/linear preceded by a `time{j}` layer appending t; its input width grows by one."""
        _refuse_user_modules(plan, self.kind, path)
        ops: list[Op] = []
        for op in plan.ops:
            if op.kind in _WEIGHTED:
                groups = op.arg("groups") if op.kind == "conv" else 1
                if isinstance(groups, int) and groups > 1:
                    raise PlanError(f"time: concat adds t as one input channel, which a grouped conv ({op.name}, "
                                    f"groups {groups}) cannot split evenly; use 'time: film'", path)
                wide = replace(op.shape_in, width=op.shape_in.width + 1)
                ops.append(Op(f"time{sum(o.kind == 'time' for o in ops) + 1}", "time", op.shape_in, wide,
                              (("dim", _channel_dim(op)),)))
                op = replace(op, shape_in=wide)
            ops.append(op)
        if not any(op.kind == "time" for op in ops):
            raise PlanError("time: concat appends t to the input of F's conv and linear layers, and this F has none; "
                            "use 'time: film'", path)
        return PartPlan(tuple(ops), plan.shape_in, plan.shape)


@register_time
class FilmTime(TimeInput):
    """A learned scale and shift from t after every norm of F, or after each hidden conv/linear without norms."""

    kind: Literal["film"]
    example: ClassVar[dict] = {"kind": "film", "hidden": 8}
    hidden: PositiveInt = 16
    act: Activation = "tanh"

    def condition(self, plan: PartPlan, path: tuple) -> PartPlan:
        """A `film{j}` layer inserted after each modulated layer."""
        _refuse_user_modules(plan, self.kind, path)
        targets = [i for i, op in enumerate(plan.ops) if op.kind in _NORMS]
        if not targets:
            weighted = [i for i, op in enumerate(plan.ops) if op.kind in _WEIGHTED]
            targets = weighted[:-1]  # hidden layers: all but the one returning F's output
        if not targets:
            raise PlanError("time: film modulates F's norm layers, or its hidden conv/linear layers when it has no "
                            "norms, and this F has neither; use 'time: concat'", path)
        ops: list[Op] = []
        for i, op in enumerate(plan.ops):
            ops.append(op)
            if i in targets:
                ops.append(Op(f"film{len(targets[:targets.index(i)]) + 1}", "film", op.shape, op.shape,
                              (("hidden", self.hidden), ("act", self.act), ("dim", _channel_dim(op)))))
        return PartPlan(tuple(ops), plan.shape_in, plan.shape)

    def label(self) -> str:
        """film(hidden)."""
        return f"film({self.hidden})"
