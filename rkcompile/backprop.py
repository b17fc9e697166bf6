"""Which stages may run with `backprop: reversible` (validation only: no torch; the work is in `rkcompile.reversible`).

Exact inversion needs y_{n−1} as a function of y_n and y_{n+1}: a two-step method with α_1 ≠ 0 and β_1 = 0
(`LinearMultistep.reversible`), nothing non-invertible after the block's sum, and the whole history inside the
stage. Batch norm in training mode is allowed: F is evaluated again on the same (rebuilt) batch, so its batch
statistics are the forward pass's; dropout is replayed with the forward pass's random state.
"""

from __future__ import annotations

from rkcompile.shapes import PlanError

__all__ = ["INVERTIBLE", "check_reversible"]

#: The built-in methods with an exact inverse step that a stage may run with `backprop: reversible`.
INVERTIBLE = ("leapfrog", "momentum", "second-order")


def check_reversible(stage) -> None:
    """Refuse, located, a `backprop: reversible` stage whose blocks cannot be inverted exactly."""
    method = getattr(stage.tableau, "method", None)
    names = ", ".join(INVERTIBLE)
    if method is None or not method.reversible:
        found = stage.tableau.name
        why = "an RK step is not invertible from its output" if method is None else \
            "it does not give y_{n−1} from y_n and y_{n+1} (it needs two steps of history, α_1 ≠ 0 and β_1 = 0)"
        raise PlanError(f"'backprop: reversible' needs a method with an exact inverse step ({names}, or an inline "
                        f"two-step method with α_1 ≠ 0 and β_1 = 0); {found}: {why}", ("backprop",))
    if method.learn and method.init_uniform and min(method.init_uniform) <= 0 <= max(method.init_uniform) and \
            method.alpha1[1] != 0:
        low, high = method.init_uniform
        raise PlanError(f"'backprop: reversible': {method.name}'s inverse step divides by its learnable "
                        f"{method.learn}_n, drawn from ({low:g}, {high:g}) at initialisation; near 0 it amplifies "
                        f"rounding errors without bound. Invertible methods: {names}", ("backprop",))
    alpha = method.at(method.theta)[0]
    if not method.learn and alpha[1] == 0:  # pragma: no cover - `reversible` already requires α_1 ≠ 0
        raise PlanError(f"'backprop: reversible': {method.name} has α_1 = 0", ("backprop",))
    after = stage.module.after_activation()
    if after not in (None, "none", "identity"):
        where = ("module", "after") if "after" in type(stage.module).model_fields else ("backprop",)
        raise PlanError(f"'backprop: reversible' inverts y_{{n+1}} = Σ α_j y_{{n−j}} + h β_0 F(y_n), but the "
                        f"'{after}' activation after each block's sum is not invertible: use 'after: none'", where)
    if stage.checkpoint:
        raise PlanError("a reversible stage saves no block activations, so its blocks have nothing to checkpoint: "
                        "remove 'checkpoint' or use 'backprop: saved'", ("checkpoint",))
    if getattr(stage.tableau, "startup_name", None) == "previous":
        raise PlanError("'backprop: reversible' rebuilds the states of one stage; 'startup: previous' carries "
                        "history in from the stage before: name a start-up method", ("integrator", "startup"))
