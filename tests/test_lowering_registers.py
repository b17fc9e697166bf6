"""The minimal-register lowering compiled: identical numerics, automatic choice, predicted = measured peaks."""

from __future__ import annotations

import pytest
import torch

from rkcompile import build, get_tableau, graphmeta, list_tableaux, parse_spec
from rkcompile.analysis import analyze
from rkcompile.graphmeta import Role
from rkcompile.lowering_registers import choose_lowering
from rkcompile.registers import accumulate_program, register_program, register_ranks

SCHEMES = list_tableaux()


def mlp_spec(integrator: str, lowering: str, steps: int = 2, weights: str = "shared") -> str:
    return parse_spec(f"""
name: mlp-{integrator}
seed: 0
input: {{features: 5}}
stages:
  - module: {{kind: mlp, hidden: [7], act: tanh}}
    integrator: {integrator}
    steps: {steps}
    weights: {weights}
    lowering: {lowering}
    step: {{h: 0.37}}
""")


def conv_spec(integrator: str, lowering: str) -> str:
    """One block of conv-BN-ReLU-conv-BN at 8 channels, 8x8: every register is one activation."""
    stages = len(get_tableau(integrator).pruned().c)
    return parse_spec(f"""
name: conv-{integrator}
seed: 0
input: {{channels: 8, height: 8, width: 8}}
stages:
  - channels: 8
    module: {{kind: basic, form: post, after: none}}
    integrator: {integrator}
    evaluations: {stages}
    lowering: {lowering}
""")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("weights", ["shared", "per-evaluation"])
def test_numerically_identical_to_the_direct_lowering(name, weights):
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    direct = build(mlp_spec(name, "accumulate", weights=weights)).double()
    registers = build(mlp_spec(name, "registers", weights=weights)).double()
    torch.testing.assert_close(registers(x), direct(x), rtol=0, atol=1e-12)
    # training: same gradients, nothing more saved
    for model in (direct, registers):
        model.zero_grad()
        model(x).square().sum().backward()
    for (n, p), (_, q) in zip(direct.named_parameters(), registers.named_parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-12, msg=n)


@pytest.mark.parametrize("name", SCHEMES)
def test_block_peak_is_the_rank_bound_plus_f(name):
    """Predicted and measured inference peak of one block: max rank registers + F's 2 temporaries (one
    activation each); saved for backward identical to the direct lowering."""
    act = 2 * 8 * 8 * 8 * 4
    t = get_tableau(name).pruned()
    reg = analyze(build(conv_spec(name, "registers")), batch=2, measure=True)
    acc = analyze(build(conv_spec(name, "accumulate")), batch=2, measure=True)
    for report, program in ((reg, register_program(t)), (acc, accumulate_program(t))):
        row = report.row("stage0.block0")
        assert row.inference_peak == row.measured_inference_peak
        assert row.training_peak == row.measured_training_peak
        assert row.saved_bytes == row.measured_saved_bytes
        assert row.inference_peak == max(max(program.live_during()) + 2, program.peak()) * act
    assert reg.row("stage0.block0").inference_peak == (max(register_ranks(t)) + 2) * act
    assert reg.total.saved_bytes == acc.total.saved_bytes


@pytest.mark.parametrize("name, expected", [("euler", "accumulate"), ("rk4", "accumulate"),
                                            ("kutta3", "registers"), ("verner89", "registers")])
def test_auto_picks_registers_only_where_they_lower_the_live_set(name, expected):
    choice = choose_lowering(get_tableau(name).pruned())
    assert choice.lowering == expected
    assert (choice.register_registers < choice.accumulate_registers) == (expected == "registers")
    auto = build(mlp_spec(name, "auto"))
    roles = {graphmeta.get(n).role for n in auto.graph.nodes if graphmeta.get(n) is not None}
    assert (Role.REGISTER in roles) == (expected == "registers")
    assert (Role.OUTPUT in roles) == (expected == "accumulate")


def test_verner_choice_reports_registers_and_extra_work():
    choice = choose_lowering(get_tableau("verner89").pruned())
    assert (choice.registers, choice.accumulate_registers, choice.extra_axpys) == (5, 10, 2)
