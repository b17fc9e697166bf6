"""A residual-function kind registered from outside the package: it validates, checks, builds, analyzes and draws."""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import nn

import rkcompile
from rkcompile import CompileError, analyze, build, parse_spec
from rkcompile.cli import cli
from rkcompile.fields import PositiveInt
from rkcompile.functions import FUNCTIONS, ResidualFunction
from rkcompile.render import to_dot
from rkcompile.shapes import Planner


class Gate(nn.Module):
    """x * sigmoid(g), one learnable g per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.g)


class Gated(ResidualFunction):
    """F = gate(tanh(conv(y))): a conv with a learnable per-channel gate."""

    kind: Literal["gated"]
    kernel: PositiveInt = 3
    state: ClassVar[str | None] = "image"
    example: ClassVar[dict] = {"kind": "gated"}

    def plan(self, f: Planner, width: int, stride: int) -> None:
        f.conv(width, self.kernel, stride, bias=True)
        f.act("tanh")
        f.module("gate", lambda shape_in, shape: Gate(shape.width), f.shape)

    def label(self) -> str:
        return "gated conv"


@pytest.fixture
def gated():
    rkcompile.register_module(Gated)
    yield Gated
    FUNCTIONS.unregister("gated")


def spec_data(integrator: str = "rk4", **module) -> dict:
    return {"name": "gated-net", "seed": 0, "input": {"channels": 3, "height": 8, "width": 8},
            "stem": {"kind": "conv", "channels": 4, "act": "none"},
            "stages": [{"module": {"kind": "gated", **module}, "integrator": integrator, "evaluations": 4}],
            "output": {"classes": 5}}


def spec_text(integrator: str = "rk4", **module) -> str:
    return yaml.safe_dump(spec_data(integrator, **module))


def test_unregistered_kind_is_an_error():
    with pytest.raises(rkcompile.SpecError, match="stages\\[0\\].module.kind: unknown kind 'gated'"):
        parse_spec(spec_text(), file="g.yaml")


def test_registered_kind_checks_builds_analyzes_and_draws(gated, tmp_path):
    counts = {}
    for integrator in ("euler", "midpoint", "rk4"):
        model = build(parse_spec(spec_text(integrator)))
        counts[integrator] = sum(p.numel() for p in model.parameters())
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)
    conv, gate, stem, head = 4 * 4 * 9 + 4, 4, 3 * 4 * 9 + 2 * 4, 4 * 5 + 5
    assert counts == dict.fromkeys(counts, 4 * (conv + gate) + stem + head)
    assert isinstance(model.get_submodule("stage0.block0.eval1.gate"), Gate)
    assert "stage0_block0_k1_gate" in model.code

    path = tmp_path / "gated.yaml"
    path.write_text(spec_text())
    result = CliRunner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "gated conv" in result.output and "ok (gated-net)" in result.output

    report = analyze(model, batch=2)
    assert report.total.parameters == counts["rk4"]
    dot = to_dot(model)
    assert "gate" in dot and "stage0" in dot


def test_registered_kind_errors_are_located(gated):
    with pytest.raises(rkcompile.SpecError) as info:
        parse_spec(spec_text(kernel=0), file="g.yaml")
    assert "stages[0].module.kernel: must be at least 1, found 0" in str(info.value)
    vector = spec_data()
    vector["input"] = {"features": 3}
    del vector["stem"]
    with pytest.raises(CompileError, match="stages\\[0\\].module.kind: module 'gated' needs image states"):
        parse_spec(yaml.safe_dump(vector), file="g.yaml")


def test_registered_kind_is_in_the_schema(gated):
    assert '"const": "gated"' in __import__("json").dumps(rkcompile.Spec.model_json_schema())
