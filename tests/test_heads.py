"""Heads: pre-activation norm + act, regression heads, per-position outputs; each against a hand-written torch head."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from rkcompile import CompileError, SpecError, build, parse_spec

STAGE = {"module": {"kind": "basic", "form": "pre"}, "evaluations": 2}
INPUTS = {"image": {"channels": 8, "height": 5, "width": 5}, "signal": {"channels": 8, "length": 7},
          "vector": {"features": 8}, "tokens": {"length": 6, "features": 8}}
MODULES = {"image": STAGE["module"], "signal": STAGE["module"], "vector": {"kind": "mlp", "hidden": [5]},
           "tokens": {"kind": "ffn", "ratio": 2}}


def spec(state: str, output: dict) -> str:
    return yaml.safe_dump({"name": "h", "seed": 0, "input": INPUTS[state],
                           "stages": [{"module": MODULES[state], "evaluations": 2}], "output": output})


def trunk(state: str) -> nn.Module:
    """The same network without a head: the same seed draws the same trunk weights (the head comes last)."""
    text = yaml.safe_load(spec(state, {"classes": 1}))
    del text["output"]
    return build(parse_spec(yaml.safe_dump(text))).double().eval()


def head_params(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith("head."))


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise(module: nn.Module) -> None:
    """Random affine and running statistics, so a hand-written copy must use each of them right."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(), m.running_mean.normal_(), m.running_var.uniform_(0.5, 2)


@pytest.mark.parametrize("state", ["image", "signal", "vector"])
def test_pre_activation_head_is_bn_relu_pool_fc(state):
    model = build(parse_spec(spec(state, {"classes": 10, "norm": "batchnorm", "act": "relu"}))).double().eval()
    randomise(model)
    bn = {"image": nn.BatchNorm2d, "signal": nn.BatchNorm1d, "vector": nn.BatchNorm1d}[state](8).double().eval()
    fc = nn.Linear(8, 10).double()
    bn.load_state_dict(model.get_submodule("head.ln").state_dict())
    fc.load_state_dict(model.get_submodule("head.fc").state_dict())
    x = torch.randn(4, *([8, 5, 5] if state == "image" else [8, 7] if state == "signal" else [8]), dtype=torch.float64)
    base = trunk(state)
    randomise(base)
    base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head.")})
    z = torch.relu(bn(base(x)))
    want = fc(z.flatten(2).mean(2) if z.dim() > 2 else z)
    assert torch.allclose(model(x), want, atol=1e-12, rtol=0)
    assert head_params(model) == count(bn) + count(fc) == 2 * 8 + 8 * 10 + 10


@pytest.mark.parametrize("outputs", [1, 3, 17])
def test_regression_head_is_a_linear_map_of_any_width(outputs):
    model = build(parse_spec(spec("vector", {"kind": "regression", "outputs": outputs}))).double()
    fc = nn.Linear(8, outputs).double()
    fc.load_state_dict(model.get_submodule("head.fc").state_dict())
    x = torch.randn(5, 8, dtype=torch.float64)
    assert torch.allclose(model(x), fc(trunk("vector")(x)), atol=1e-12, rtol=0) and model(x).shape == (5, outputs)
    assert head_params(model) == 8 * outputs + outputs
    # the same trunk with a classifier has the same parameters: only the name of the output width differs
    classifier = build(parse_spec(spec("vector", {"classes": outputs})))
    assert count(classifier) == count(model)


@pytest.mark.parametrize(("state", "shape"), [("image", (2, 4, 5, 5)), ("signal", (2, 4, 7)), ("tokens", (2, 6, 4))])
def test_pool_none_maps_every_position(state, shape):
    model = build(parse_spec(spec(state, {"kind": "regression", "outputs": 4, "pool": "none"}))).double()
    x = torch.randn(2, *{"image": (8, 5, 5), "signal": (8, 7), "tokens": (6, 8)}[state], dtype=torch.float64)
    assert model(x).shape == shape
    head = {"image": nn.Conv2d(8, 4, 1), "signal": nn.Conv1d(8, 4, 1), "tokens": nn.Linear(8, 4)}[state].double()
    head.load_state_dict(model.get_submodule("head.fc").state_dict())
    base = trunk(state).train()
    model.train()  # batch statistics: no running statistics to copy
    assert torch.allclose(model(x), head(base(x)), atol=1e-12, rtol=0)
    assert head_params(model) == 8 * 4 + 4


@pytest.mark.parametrize(("output", "state", "message"), [
    ({"classes": 3, "pool": "none"}, "vector",
     "example.yaml:6:3: output.pool: 'pool: none' keeps the positions of images, signals and tokens; this state is "
     "a vector (it has none)"),
    ({"classes": 3, "pool": "mean"}, "image",
     "example.yaml:8:3: output.pool: 'pool' chooses how tokens are pooled; this state is an image"),
    ({"kind": "regression"}, "vector", "example.yaml:4:1: output.outputs: missing required field 'outputs'"),
    ({"kind": "regression", "outputs": 0}, "vector",
     "example.yaml:6:3: output.outputs: must be at least 1, found 0"),
    ({"classes": 3, "act": "swish"}, "vector", "example.yaml:5:3: output.act: unknown value 'swish' (did you mean 'silu'?); expected one "
     "of relu, tanh, gelu, silu, sigmoid, softplus, elu, leaky-relu, identity, none"),
])
def test_bad_heads_are_located_errors(output, state, message):
    with pytest.raises((SpecError, CompileError)) as info:
        parse_spec(spec(state, output), file="example.yaml")
    assert str(info.value) == message
