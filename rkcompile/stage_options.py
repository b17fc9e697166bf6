"""Per-stage options of F's weights and training: initialisation (`init`) and stochastic depth (`drop_path`).

`init: {kaiming: fan-in | fan-out, zero_last_norm: true}` — Kaiming-normal weights for every conv and linear layer of
F (He et al. 2015, with the ReLU gain, as torchvision's ResNets use `fan-out`), and the affine scale γ of F's last
norm layer set to 0 (Goyal et al. 2017's zero-γ: every F starts as the zero map, each block as the identity).

`drop_path: P` or `{start: P0, end: P1}` — stochastic depth (Huang et al. 2016): in training each F's output is
zeroed per sample with probability p and scaled by 1/(1 − p); in eval mode it is the identity. A linear rate goes
from `start` at the stage's first F to `end` at its last (timm's linearly increasing rule, per stage).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from rkcompile.fields import Model

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Init", "DropPath", "drop_rates", "initialise", "NORMS", "DROP_PATH_SCHEMA"]

#: planned op kinds that are norm layers (the zero-γ target)
NORMS = ("batchnorm", "groupnorm", "layernorm", "rmsnorm")

Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


class Init(Model):
    """How F's weights are initialised: torch's defaults, or Kaiming normal (`kaiming`), and zero-γ."""

    kaiming: Literal["none", "fan-in", "fan-out"] = "none"
    zero_last_norm: bool = False


class DropPath(Model):
    """A drop-path rate per F: `drop_path: P` (every F) or `{start: P0, end: P1}`, linear over the stage's F's."""

    start: Rate = 0.0
    end: Rate

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        if isinstance(value, dict):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a rate in [0, 1) or {{start, end}}, found {value!r:.40}")
        if not 0 <= value < 1:
            raise ValueError(f"a drop-path rate is a probability in [0, 1), found {value}")
        return {"start": value, "end": value}

    @model_validator(mode="after")
    def _growing(self) -> DropPath:
        if self.end < self.start:
            raise ValueError(f"'end' ({self.end}) is below 'start' ({self.start}): stochastic depth grows with depth")
        return self

    @property
    def constant(self) -> bool:
        """True when every F has the same rate."""
        return self.start == self.end


def drop_rates(rate: DropPath | None, count: int) -> list[float]:
    """The drop probability of each of the stage's `count` F's (in creation order)."""
    if rate is None:
        return [0.0] * count
    if count == 1 or rate.constant:
        return [rate.end] * count
    return [rate.start + (rate.end - rate.start) * j / (count - 1) for j in range(count)]


def _number_form(schema: dict) -> None:
    """The JSON Schema of `drop_path` also accepts the shorthand number."""
    schema.setdefault("anyOf", []).append({"type": "number", "minimum": 0, "exclusiveMaximum": 1,
                                           "description": "the same drop-path rate for every F"})


DROP_PATH_SCHEMA = _number_form


def initialise(part: nn.Module, init: Init) -> None:
    """Apply `init` to a freshly built F in place (before any other module is built, so seeding is deterministic)."""
    import torch
    from torch import nn

    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)
    last = None
    with torch.no_grad():
        for module in part.modules():
            if init.kaiming != "none" and isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in" if init.kaiming == "fan-in" else "fan_out",
                                        nonlinearity="relu")
            if isinstance(module, norms) and getattr(module, "weight", None) is not None:
                last = module
        if init.zero_last_norm:
            if last is None:
                from rkcompile.errors import CompileError

                raise CompileError("init.zero_last_norm: this F has no norm layer with a scale to set to zero")
            last.weight.zero_()
