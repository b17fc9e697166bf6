"""Layer kinds of layer lists: squeeze-excitation against torchvision's SqueezeExcitation and a hand-written F."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn
from torchvision.ops import SqueezeExcitation as TorchvisionSE

from rkcompile import CompileError, SpecError, build, parse_spec

F = ["conv", "batchnorm", "relu", "conv", "batchnorm"]


def spec(se: dict, input: dict | None = None, layers: list | None = None) -> str:
    return yaml.safe_dump({"name": "se", "seed": 0, "input": input or {"channels": 16, "height": 6, "width": 6},
                           "stages": [{"module": {"kind": "layers", "layers": [*(layers or F), se]},
                                       "integrator": "euler", "evaluations": 1}]})


def test_squeeze_excitation_is_torchvisions_and_f_is_the_hand_written_block():
    model = build(parse_spec(spec({"kind": "squeeze-excitation", "reduction": 4}))).double().eval()
    f = model.get_submodule("stage0.block0.eval1")
    reference = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                              nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                              TorchvisionSE(16, 4)).double().eval()
    with torch.no_grad():
        for m in f.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(), m.running_var.uniform_(0.5, 2), m.weight.normal_(), m.bias.normal_()
    names = ["conv1", "bn1", None, "conv2", "bn2", "se1"]
    for i, name in enumerate(names):
        if name is not None:
            reference[i].load_state_dict(f.get_submodule(name).state_dict())
    x = torch.randn(3, 16, 6, 6, dtype=torch.float64)
    assert torch.allclose(model(x), x + reference(x), atol=1e-12, rtol=0)  # one Euler step, the SE inlined
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in f.get_submodule("se1").parameters()) == 16 * 4 + 4 + 4 * 16 + 16
    assert "se1_sigmoid" in model.code  # each operation of the SE is its own graph node


def test_squeeze_excitation_on_signals_and_an_explicit_squeeze_width():
    model = build(parse_spec(spec({"kind": "squeeze-excitation", "squeeze": 3}, {"channels": 6, "length": 10},
                                  ["conv"]))).double()
    f = model.get_submodule("stage0.block0.eval1")
    x = torch.randn(2, 6, 10, dtype=torch.float64)
    u = f.conv1(x)
    w1, b1 = f.se1.fc1.weight[:, :, 0], f.se1.fc1.bias
    w2, b2 = f.se1.fc2.weight[:, :, 0], f.se1.fc2.bias
    gate = torch.sigmoid(torch.relu(u.mean(2) @ w1.T + b1) @ w2.T + b2)  # N x C
    assert torch.allclose(model(x), x + u * gate[:, :, None], atol=1e-12, rtol=0)
    assert w1.shape == (3, 6)


@pytest.mark.parametrize(("se", "input", "message"), [
    ({"kind": "squeeze-excitation", "reduction": 32}, None,
     "example.yaml:19:7: stages[0].module.layers[5].reduction: reduction 32 leaves no channels of 16; nearest valid: 16"),
    ({"kind": "squeeze-excitation"}, {"features": 16},
     "example.yaml:12:7: stages[0].module.layers[1]: layer 'squeeze-excitation' needs image or signal states; this "
     "state is a vector"),
    ({"kind": "squeeze-excitation", "ratio": 4}, None,
     "example.yaml:19:7: stages[0].module.layers[5].ratio: unknown field 'ratio'"),
])
def test_bad_squeeze_excitation_is_a_located_error(se, input, message):
    layers = ["linear"] if input else None
    with pytest.raises((SpecError, CompileError)) as info:
        parse_spec(spec(se, input, layers), file="example.yaml")
    assert str(info.value) == message
