"""Stage options `init` (Kaiming modes, zero-γ) and `drop_path` (stochastic depth), against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from rkcompile import CompileError, SpecError, build, parse_spec
from rkcompile.stage_options import drop_rates


def spec(stage: dict, input: dict | None = None, output: dict | None = None) -> str:
    body = {"name": "o", "seed": 0, "input": input or {"features": 64},
            "stages": [{"module": {"kind": "mlp", "hidden": [256]}, "evaluations": 4, **stage}]}
    if output:
        body["output"] = output
    return yaml.safe_dump(body)


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("mode", "fan"), [("fan-in", 64), ("fan-out", 256)])
def test_kaiming_modes_draw_with_the_relu_gain_over_the_chosen_fan(mode, fan):
    model = build(parse_spec(spec({"init": {"kaiming": mode}})))
    weights = torch.cat([model.get_submodule(f"stage0.block{b}.eval1.fc1").weight.flatten() for b in range(4)])
    # 65,536 normal draws: the sample std is within 1% of sqrt(2 / fan) with overwhelming probability
    assert weights.std().item() == pytest.approx(math.sqrt(2 / fan), rel=0.01)
    assert abs(weights.mean().item()) < 0.01 * math.sqrt(2 / fan) * 10
    default = build(parse_spec(spec({})))
    assert params(model) == params(default)  # an initialisation changes values, never the parameter count
    assert torch.equal(build(parse_spec(spec({"init": {"kaiming": mode}}))).state_dict()["stage0.block0.eval1.fc1.weight"],
                       model.state_dict()["stage0.block0.eval1.fc1.weight"])  # seeded


@pytest.mark.parametrize("form", ["post", "pre"])
def test_zero_gamma_makes_every_block_the_identity(form):
    text = spec({"module": {"kind": "basic", "form": form, "after": "none"}, "init": {"zero_last_norm": True}},
                {"channels": 8, "height": 5, "width": 5})
    model = build(parse_spec(text)).double()
    for b in range(4):
        f = model.get_submodule(f"stage0.block{b}.eval1")
        assert torch.count_nonzero(f.bn2.weight) == 0 and torch.count_nonzero(f.bn1.weight) == 8
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    assert torch.equal(model(x), x)  # F(y) = 0 at initialisation: each block is y + 0


def test_drop_path_is_the_identity_in_eval_mode_and_adds_no_parameters():
    plain = build(parse_spec(spec({}, output={"classes": 3}))).double().eval()
    dropped = build(parse_spec(spec({"drop_path": 0.5}, output={"classes": 3}))).double().eval()
    x = torch.randn(8, 64, dtype=torch.float64)
    assert torch.equal(plain(x), dropped(x)) and params(plain) == params(dropped)
    assert plain.state_dict().keys() == dropped.state_dict().keys()


def test_drop_path_zeroes_whole_samples_of_f_and_rescales_the_others():
    p = 0.5
    model = build(parse_spec(spec({"evaluations": 1, "drop_path": p}, {"features": 4}))).double().train()
    f = model.get_submodule("stage0.block0.eval1")
    x = torch.randn(200, 4, dtype=torch.float64)
    k = f.fc2(torch.tanh(f.fc1(x)))  # F(x) by hand, without the drop
    torch.manual_seed(1)
    y = model(x)
    kept = torch.isclose(y, x + k / (1 - p), atol=1e-12, rtol=0).all(1)
    dropped = torch.isclose(y, x, atol=1e-12, rtol=0).all(1)
    assert bool((kept | dropped).all()) and 60 < int(dropped.sum()) < 140  # Binomial(200, 1/2): mean 100, sd 7


def test_a_growing_rate_goes_linearly_from_start_to_end_over_the_stages_f():
    model = build(parse_spec(spec({"evaluations": 8, "integrator": "rk4", "drop_path": {"start": 0.1, "end": 0.45}})))
    rates = [model.get_submodule(f"stage0.block{b}.eval{i}.drop_path").p for b in range(2) for i in range(1, 5)]
    assert rates == pytest.approx([0.1 + 0.05 * j for j in range(8)], abs=1e-12)
    assert drop_rates(None, 3) == [0.0] * 3 and drop_rates(parse_spec(spec({"drop_path": 0.2})).stages[0].drop_path,
                                                            2) == [0.2, 0.2]


@pytest.mark.parametrize("weights", ["shared", {"kind": "basis", "pieces": 2}, {"kind": "basis", "functions": "linear", "pieces": 3}])
def test_one_rate_works_with_shared_and_basis_weights(weights):
    model = build(parse_spec(spec({"weights": weights, "drop_path": 0.3, "steps": 2, "evaluations": None,
                                   "integrator": "midpoint"}, {"features": 4}))).train()
    assert model(torch.randn(5, 4)).shape == (5, 4)
    assert all(m.p == 0.3 for n, m in model.named_modules() if n.endswith("drop_path"))


@pytest.mark.parametrize(("stage", "message"), [
    ({"drop_path": 1.0}, "example.yaml:6:3: stages[0].drop_path: a drop-path rate is a probability in [0, 1), found 1.0"),
    ({"drop_path": "high"}, "example.yaml:6:3: stages[0].drop_path: expected a rate in [0, 1) or {start, end}, found "
     "'high'"),
    ({"drop_path": {"start": 0.3, "end": 0.1}}, "example.yaml:6:3: stages[0].drop_path: 'end' (0.1) is below 'start' "
     "(0.3): stochastic depth grows with depth"),
    ({"drop_path": {"end": 0.2}, "weights": "shared"}, "example.yaml:6:3: stages[0].drop_path: a growing drop_path "
     "gives each F its own rate; with 'shared' weights F's serve many evaluations: use one rate (drop_path: P) or "
     "per-evaluation weights"),
    ({"init": {"zero_last_norm": True}}, "example.yaml:8:5: stages[0].init.zero_last_norm: zero-γ sets the scale of "
     "F's last norm layer to 0, but F has no norm layer"),
    ({"init": {"kaiming": "fan_out"}}, "example.yaml:8:5: stages[0].init.kaiming: unknown value 'fan_out' (did you "
     "mean 'fan-out'?); expected one of none, fan-in, fan-out"),
])
def test_bad_options_are_located_errors(stage, message):
    with pytest.raises((SpecError, CompileError)) as info:
        parse_spec(spec(stage), file="example.yaml")
    assert str(info.value) == message
