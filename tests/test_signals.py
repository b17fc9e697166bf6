"""1-d signal states {channels, length}: conv1d stem, basic/bottleneck blocks, norms, entries and heads."""

from __future__ import annotations

import pytest
import torch
import yaml

from rkcompile import CompileError, analyze, build, parse_spec


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("integrator", ["euler", "midpoint", "rk4"])
def test_resnet1d_spec_has_the_counted_parameters_under_every_scheme(integrator):
    model = build("specs/resnet1d-signals.yaml", {"stages.0.integrator": integrator})
    stem, f, head = 1 * 32 * 3 + 2 * 32, 2 * (32 * 32 * 3) + 2 * 2 * 32, 32 * 10 + 10
    assert parameters(model) == stem + 8 * f + head == 50_666
    assert isinstance(model.get_submodule("stem.conv"), torch.nn.Conv1d)
    assert isinstance(model.get_submodule("stage0.block0.eval1.bn1"), torch.nn.BatchNorm1d)
    assert model(torch.randn(4, 1, 40)).shape == (4, 10)


def test_basic_block_on_a_signal_is_conv1d_bn_relu_conv1d_bn():
    model = build(parse_spec(yaml.safe_dump({"name": "s", "seed": 0, "input": {"channels": 3, "length": 9},
                  "stages": [{"module": {"kind": "basic", "after": "none"}, "steps": 1}]}))).double().eval()
    f = model.get_submodule("stage0.block0.eval1")
    y = torch.randn(2, 3, 9, dtype=torch.float64)
    z = torch.nn.functional.conv1d(y, f.conv1.weight, padding=1)
    z = torch.relu(torch.nn.functional.batch_norm(z, f.bn1.running_mean, f.bn1.running_var, f.bn1.weight,
                                                  f.bn1.bias))
    z = torch.nn.functional.conv1d(z, f.conv2.weight, padding=1)
    z = torch.nn.functional.batch_norm(z, f.bn2.running_mean, f.bn2.running_var, f.bn2.weight, f.bn2.bias)
    torch.testing.assert_close(model(y), y + z, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shortcut", ["zero-pad", "conv"])
def test_transition_entry_changes_width_and_length(shortcut):
    data = {"name": "s", "seed": 0, "input": {"channels": 2, "length": 15},
            "stem": {"kind": "conv1d", "channels": 4, "pool": {"kind": "maxpool"}},
            "stages": [{"module": "basic", "evaluations": 2},
                       {"channels": 8, "entry": {"kind": "transition", "shortcut": shortcut},
                        "module": {"kind": "bottleneck", "expansion": 2}, "evaluations": 2, "integrator": "midpoint"},
                       {"module": {"kind": "layers", "layers": ["conv", {"kind": "groupnorm", "groups": 2}, "relu",
                                                                "conv", "layernorm"]}, "evaluations": 2}],
            "output": {"classes": 3}}
    spec = parse_spec(yaml.safe_dump(data))
    assert [s.shape.show() for s in spec.plan.stages] == ["signal 4x8", "signal 8x4", "signal 8x4"]
    model = build(spec)
    assert model(torch.randn(2, 2, 15)).shape == (2, 3)


def test_signal_analysis_matches_measurement_within_5_percent():
    report = analyze(build("specs/resnet1d-signals.yaml"), batch=4, measure=True)
    for row in report.rows:
        for predicted, measured in ((row.inference_peak, row.measured_inference_peak),
                                    (row.saved_bytes, row.measured_saved_bytes),
                                    (row.training_peak, row.measured_training_peak)):
            assert abs(predicted - measured) <= 0.05 * measured, (row.label, predicted, measured)


BAD = [
    ({"input": {"channels": 2, "length": 8}, "stages": [{"module": {"kind": "mlp", "hidden": [3]}, "steps": 1}]},
     "stages[0].module.kind: module 'mlp' needs vector states"),
    ({"input": {"channels": 2, "length": 8}, "stages": [{"module": {"kind": "layers", "layers": ["linear"]},
                                                         "steps": 1}]},
     "stages[0].module.layers[0]: layer 'linear' needs vector or tokens states; this state is signal 2x8"),
    ({"input": {"channels": 2, "length": 8}, "stages": [{"features": 4, "module": "basic", "steps": 1}]},
     "stages[0].features: 'features' is for vector and tokens states; this state is signal 2x8: use 'channels'"),
    ({"input": {"channels": 2, "length": 8}, "stem": {"kind": "conv", "channels": 4},
      "stages": [{"module": "basic", "steps": 1}]},
     "stem: a conv stem needs image input {channels, height, width}"),
    ({"input": {"channels": 2, "height": 8, "width": 8}, "stem": {"kind": "conv1d", "channels": 4},
      "stages": [{"module": "basic", "steps": 1}]},
     "stem: a conv1d stem needs signal states; this state is an image"),
    ({"input": {"channels": 2, "length": 8},
      "stages": [{"module": "basic", "steps": 1}, {"channels": 4, "entry": "project", "module": "basic", "steps": 1}]},
     "stages[1].entry: entry 'project' needs tokens states; this state is signal 2x8: use 'transition' or 'stitch'"),
    ({"input": {"length": 8, "features": 4},
      "stages": [{"module": "ffn", "steps": 1}, {"features": 8, "entry": "transition", "module": "ffn", "steps": 1}]},
     "stages[1].entry: entry 'transition' needs image or signal states; this state is tokens 8x4: use 'project'"),
]


@pytest.mark.parametrize("data, message", BAD, ids=[m for _, m in BAD])
def test_bad_signal_specs_are_located_errors(data, message):
    with pytest.raises(CompileError) as info:
        parse_spec(yaml.safe_dump({"name": "s", **data}), file="s.yaml")
    assert str(info.value).startswith("s.yaml:") and message in str(info.value), str(info.value)


MNIST1D = sorted(p for p in __import__("pathlib").Path("specs/mnist1d").glob("mnist1d-*.yaml")
                 if p.stem != "mnist1d-continuousnet")


@pytest.mark.parametrize("path", MNIST1D, ids=lambda p: p.stem)
def test_mnist1d_specs_have_equal_parameters_and_t_is_blocks_times_h(path):
    model = build(path)
    stem, f, head = 1 * 16 * 3 + 2 * 16, 2 * (16 * 16 * 3) + 2 * 2 * 16, 16 * 10 + 10
    stage = model.spec.stages[0]
    extra = stage.blocks - 1 if path.stem == "mnist1d-lm-resnet" else 0  # one learnable k_n per step after the first
    assert stage.total_evaluations == 28
    assert parameters(model) == stem + 28 * f + head + extra == 45_050 + extra
    blocks = {"euler": 28, "midpoint": 14, "rk4": 7, "verner89": 2, "ab3": 24, "lm-resnet": 28, "momentum": 28}
    assert stage.blocks == blocks[path.stem.removeprefix("mnist1d-")]
    assert model(torch.randn(3, 1, 40)).shape == (3, 10)
    # the equal-T control is one field: h = 1/4 keeps the parameters and makes T = blocks / 4
    control = build(path, {"stages.0.step": {"h": "1/4"}})
    assert parameters(control) == parameters(model) and control.spec.stages[0].blocks == stage.blocks


def test_mnist1d_continuousnet_parameters_do_not_depend_on_scheme_or_steps():
    counts = {parameters(build("specs/mnist1d/mnist1d-continuousnet.yaml",
                               {"stages.0.integrator": s, "stages.0.steps": n})) for s in ("euler", "rk4") for n in (4, 8)}
    piece = 2 * (24 * 24 * 3 + 24) + 2 * 2 * 24
    assert counts == {24 * 3 + 2 * 24 + 4 * piece + 24 * 10 + 10} == {14_770}
