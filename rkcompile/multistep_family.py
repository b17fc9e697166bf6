"""The "multistep" integrator family: linear multistep, LM-ResNet, momentum and second-order stages.

A stage's `integrator` is a built-in name (`ab3`, `lm-resnet`, ...) or a mapping: `{method: ab3, startup: rk4}`,
`{method: momentum, gamma: 0.5, learn: true}`, or inline coefficients `{alpha: [...], beta: [...]}` (exact, like
inline tableaux). A k-step method needs y_1 … y_{k−1} before its first step: they come from k − 1 start-up steps
of an explicit RK method (`startup`, a tableau name), each its own block of s evaluations, whose first
evaluation k_1 = F(y_n) is also the history value f_n. The budget E therefore covers (k − 1)·s start-up
evaluations and one evaluation per multistep step: N = E − (k − 1)(s − 1) blocks. `startup: rest` starts from
rest instead (y_{−j} = y_0: v_0 = 0 for momentum, zero initial velocity for second order; no f history allowed);
`startup: previous` continues the history of the previous stage (same method and h, no entry in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, cast

from pydantic import PrivateAttr, model_validator

from rkcompile.errors import RkcompileError, TableauError
from rkcompile.exact import format_coefficient
from rkcompile.fields import Coefficient, Model
from rkcompile.integrators import FAMILIES, IntegratorFamily
from rkcompile.multistep import LinearMultistep, get_multistep, list_multistep, momentum
from rkcompile.shapes import PlanError

__all__ = ["MultistepIntegrator", "MultistepStage", "resolve_multistep", "STARTUP_KEYWORDS"]

#: `startup` values that name no RK method.
STARTUP_KEYWORDS = ("rest", "previous")


class MultistepIntegrator(Model):
    """A multistep scheme in a spec: a built-in `method` with options, or inline exact coefficients (α, β)."""

    method: str | None = None
    name: str = "inline"
    alpha: list[Coefficient] | None = None
    beta: list[Coefficient] | None = None
    derivative: Literal[1, 2] = 1
    startup: str | None = None
    gamma: Coefficient | None = None
    learn: bool = False
    source: str = ""

    _resolved: LinearMultistep | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _valid(self) -> MultistepIntegrator:
        inline = self.alpha is not None or self.beta is not None
        if inline == (self.method is not None):
            raise ValueError("give a built-in 'method' (" + ", ".join(list_multistep()) + ") or inline 'alpha' and "
                             "'beta', not both" if inline else "give 'method' or inline 'alpha' and 'beta'")
        if (self.gamma is not None or self.learn) and self.method != "momentum":
            field = "gamma" if self.gamma is not None else "learn"
            raise PlanError(f"'{field}' sets the momentum of 'method: momentum', found method {self.method!r}",
                            (field,), compile=False)
        try:
            if inline:
                if self.alpha is None or self.beta is None:
                    raise PlanError(f"an inline multistep method needs both 'alpha' and 'beta'; "
                                    f"'{'beta' if self.beta is None else 'alpha'}' is missing", (), compile=False)
                method = LinearMultistep(self.name, tuple(a.value for a in self.alpha),
                                         tuple(b.value for b in self.beta), derivative=self.derivative,
                                         source=self.source)
            elif self.method == "momentum":
                method = momentum(self.gamma.value if self.gamma is not None else Fraction(9, 10), self.learn)
            else:
                assert self.method is not None  # one of method and alpha/beta is given (checked above)
                method = get_multistep(self.method)
        except TableauError as e:
            field = "alpha" if inline else "gamma" if self.gamma is not None else "method"
            raise PlanError(str(e), (field,), compile=False) from None
        if self.startup is not None and self.startup.strip().lower() not in STARTUP_KEYWORDS:
            from rkcompile.tableaux import get_tableau

            try:
                get_tableau(self.startup)
            except TableauError as e:
                raise PlanError(f"the start-up method: {e}", ("startup",), compile=False) from None
        self._resolved = method
        return self

    def to_method(self) -> LinearMultistep:
        """The validated method."""
        assert self._resolved is not None, "set by validation"
        return self._resolved


@dataclass(frozen=True)
class MultistepStage:
    """A stage's resolved multistep method with its start-up: the layout of its blocks and its budget."""

    method: LinearMultistep
    startup_name: str  # an RK tableau name, "rest" or "previous"

    stages = 1  # evaluations per multistep step
    c = (Fraction(0),)

    @property
    def name(self) -> str:
        """The method's name."""
        return self.method.name

    @property
    def order(self) -> int:
        """The method's order (at its nominal coefficients)."""
        return self.method.order

    @property
    def startup(self):
        """The start-up RK tableau (pruned), or None when starting from rest or from the previous stage."""
        if self.startup_name in STARTUP_KEYWORDS:
            return None
        from rkcompile.tableaux import get_tableau

        return get_tableau(self.startup_name).pruned()

    @property
    def startup_steps(self) -> int:
        """How many start-up RK steps precede the first multistep step (k − 1, or 0)."""
        return 0 if self.startup is None else self.method.steps - 1

    def block_stages(self, b: int) -> int:
        """Evaluations of F in block b."""
        return self.startup.stages if b < self.startup_steps else 1

    def block_c(self, b: int) -> tuple:
        """The evaluation times c_i of block b (in units of h after t_b)."""
        return tuple(self.startup.c) if b < self.startup_steps else self.c

    def first_evaluation(self, b: int) -> int:
        """Flat index of block b's first evaluation in the stage."""
        s = self.startup.stages if self.startup_steps else 1
        return min(b, self.startup_steps) * s + max(b - self.startup_steps, 0)

    def evaluations_for(self, blocks: int) -> int:
        """The evaluations N blocks take (start-up steps included)."""
        return self.first_evaluation(blocks)

    def blocks_for(self, evaluations: int) -> int:
        """The blocks a budget of E evaluations makes: N = E − (k − 1)(s − 1)."""
        s = self.startup.stages if self.startup_steps else 1
        return evaluations - self.startup_steps * (s - 1)

    def budget_error(self, blocks: int, evaluations: int | None) -> str | None:
        """Why this many blocks (or this budget) cannot start the method, or None."""
        need = self.startup_steps + 1
        if blocks >= need:
            return None
        t, steps = self.startup, self.startup_steps
        what = (f"the start-up of {self.name}: it reads {self.method.steps} steps of history, so {steps} start-up "
                f"step{'s' if steps > 1 else ''} of {t.name} ({steps * t.stages} evaluations) precede its first step")
        if evaluations is not None:
            return (f"a budget of {evaluations} evaluations does not cover {what}; give at least "
                    f"{self.evaluations_for(need)} evaluations")
        return f"{blocks} step{'s' if blocks > 1 else ''} do not cover {what}; give at least {need} steps"

    def check_previous(self, previous, stage, path: tuple) -> None:
        """Validate `startup: previous` against the stage before (see `check_previous`)."""
        check_previous(previous, stage, path)

    def describe(self) -> str:
        """The method's facts and this stage's start-up."""
        return self.method.describe() + f"\n  start-up used: {self.startup_name}"


def _knows(value: object) -> bool:
    if isinstance(value, MultistepIntegrator):
        return True
    return isinstance(value, str) and value.strip().lower() in list_multistep()


def resolve_multistep(value: object) -> MultistepStage:
    """A name or a MultistepIntegrator → the stage method; the start-up defaults to the method's own."""
    if isinstance(value, str):
        method, startup = get_multistep(value), None
    else:
        integrator = cast(MultistepIntegrator, value)  # `_knows` admits only names and MultistepIntegrators
        method, startup = integrator.to_method(), integrator.startup
    if startup is None:
        startup = method.startup
        if startup is None:
            if method.steps > 1:
                rest = ", or 'startup: rest'" if method.history[1] == 0 else ""
                raise TableauError(f"the inline multistep method {method.name!r} reads {method.steps} steps of "
                                   f"history: name an explicit RK method for its start-up steps ('startup: rk4'){rest}")
            startup = "euler"
    startup = startup.strip().lower()
    if startup == "rest" and method.history[1] > 0:
        raise TableauError(f"'startup: rest' sets y_{{−j}} = y_0 but {method.name} also reads past values of F "
                           f"(β_{method.history[1]} ≠ 0): name an RK method for its start-up steps")
    return MultistepStage(method, startup)


def _start(plan, compiler, n: int, stage):
    from rkcompile.multistep_lowering import MultistepStepper

    previous = compiler.steppers.get(n - 1) if stage.tableau.startup_name == "previous" else None
    stepper = MultistepStepper(stage.tableau, plan, compiler, n, previous)
    compiler.steppers[n] = stepper
    return stepper


def _lower(*args, **kwargs):
    raise RkcompileError("a multistep stage is lowered by its stepper (IntegratorFamily.start), not step by step")


def check_previous(previous, stage, path: tuple) -> None:
    """`startup: previous` needs a previous stage with the same method and h, and no entry in between."""
    method = stage.tableau
    if getattr(method, "startup_name", None) != "previous":
        return
    where = path + ("integrator", "startup")
    if previous is None:
        raise PlanError("'startup: previous' continues the previous stage's history, but this is the first stage",
                        where, compile=False)
    if stage.entry.kind != "none":
        raise PlanError(f"'startup: previous' carries y_{{n−1}} across the stage boundary, but this stage's "
                        f"'{stage.entry.kind}' entry changes the state in between: start again ('startup: "
                        f"{method.method.startup or 'rk4'}') or remove the entry", where, compile=False)
    if previous.backprop == "reversible":
        raise PlanError("'startup: previous' reads the previous stage's y_{N−1}, which its 'backprop: reversible' "
                        "does not keep: name a start-up method, or use 'backprop: saved' there", where, compile=False)
    prev = previous.tableau
    if getattr(prev, "method", None) != method.method or previous.h != stage.h:
        found = f"{prev.name} with h = {format_coefficient(previous.h)}"
        raise PlanError(f"'startup: previous' continues the previous stage's history: it needs the same method "
                        f"({method.name}) and h ({format_coefficient(stage.h)}), found {found}", where, compile=False)


FAMILIES.register("multistep", IntegratorFamily("multistep", _knows, resolve_multistep, _lower, start=_start,
                                                          names=list_multistep))
