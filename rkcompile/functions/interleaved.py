"""Interleaved residual functions: `module: [attention, ffn]` used cyclically over a stage's evaluations.

Evaluation j of the stage (counted across blocks, per-evaluation weights) calls member j mod the cycle's length,
so Euler over [attention, ffn] is the standard pre-LN transformer layer stack, and the same weights restack as
midpoint or RK4 blocks at identical parameter counts.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from rkcompile.fields import Kind
from rkcompile.functions import FUNCTIONS, ResidualFunction, plan_function, register_module
from rkcompile.shapes import Planner

__all__ = ["Interleaved"]


@register_module
class Interleaved(ResidualFunction):
    """A cycle of residual functions (written as a YAML list under `module`); members may not be cycles."""

    kind: Literal["interleaved"]
    example: ClassVar[dict] = {"kind": "interleaved", "modules": [{"kind": "mlp", "hidden": [3]},
                                                                  {"kind": "mlp", "hidden": [5]}]}
    example_state: ClassVar[str] = "vector"
    modules: list[Annotated[ResidualFunction, Kind(FUNCTIONS)]] = Field(min_length=2)

    def cycle(self) -> list[ResidualFunction]:
        """The members, in order."""
        for j, member in enumerate(self.modules):
            if len(member.cycle()) > 1:
                from rkcompile.shapes import PlanError

                raise PlanError("an interleaved module's members are single residual functions, not lists", (j,))
        return list(self.modules)

    def member_path(self, j: int) -> tuple:
        """Member j is item j of the `module` list."""
        return (j,)

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """An entry's F (the one evaluation an entry makes) is the first member."""
        plan_function(self.modules[0], f, width, stride)

    def after_activation(self) -> str | None:
        """The explicit `after` only (the members' own `after` apply to them alone nowhere: a step adds once)."""
        return self.after

    def label(self) -> str:
        """'attention(4) / ffn(x4)'."""
        return " / ".join(m.label() for m in self.modules)
