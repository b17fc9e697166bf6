"""Tests of rkcompile.analysis: predictions on meta tensors against one real CPU run, and published memory facts."""

from __future__ import annotations

import json

import pytest
import torch

from rkcompile.analysis import analyze, predict
from rkcompile.compiler import build
from rkcompile.errors import RkcompileError

SCHEMES = ["euler", "midpoint", "rk4", "verner89"]
BATCH, CHANNELS, SIDE = 2, 8, 8
SMALL = {"input.height": SIDE, "input.width": SIDE, "stages.0.channels": CHANNELS, "stem.channels": CHANNELS,
         "stages.0.evaluations": 28}  # 28 evaluations: verner89 keeps 2 blocks of 14
ACT = BATCH * CHANNELS * SIDE * SIDE * 4  # bytes of one activation-sized float32 tensor


def _small(name: str):
    return build(f"specs/ho-resnet58-{name}.yaml", overrides=SMALL)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def reports(one_thread):
    """Predicted-and-measured reports of the reduced HO-ResNet-58 for every scheme (and the adaptive Verner)."""
    return {name: analyze(_small(name), batch=BATCH, measure=True) for name in [*SCHEMES, "verner89-adaptive"]}


@pytest.mark.parametrize("name", SCHEMES)
def test_predicted_matches_measured_per_unit(reports, name):
    for row in reports[name].rows:
        for field in ("inference_peak", "saved_bytes", "training_peak"):
            predicted, measured = getattr(row, field), getattr(row, f"measured_{field}")
            assert measured == pytest.approx(predicted, rel=0.05, abs=64), (row.label, field)


@pytest.mark.parametrize("name", SCHEMES)
def test_units_in_graph_order(reports, name):
    labels = [u.label for u in reports[name].units]
    blocks = 28 // {"euler": 1, "midpoint": 2, "rk4": 4, "verner89": 14}[name]
    assert labels == ["stem", *(f"stage0.block{b}" for b in range(blocks)), "head"]


@pytest.mark.parametrize("name", SCHEMES)
def test_parameters_match_the_module(reports, name):
    model = _small(name)
    assert reports[name].total.parameters == sum(p.numel() for p in model.parameters())
    assert reports[name].total.parameter_bytes == 4 * reports[name].total.parameters
    assert reports[name].total.parameters == reports["euler"].total.parameters


@pytest.mark.parametrize("name", SCHEMES)
def test_equal_saved_bytes_with_constant_coefficients(reports, name):
    # Adding a k with a constant coefficient (torch.add(y, k, alpha=a)) saves nothing: only F's insides are saved.
    assert reports[name].total.saved_bytes == reports["euler"].total.saved_bytes
    assert reports[name].total.relative["saved_bytes"] == 1.0


def test_saved_bytes_by_hand_rule(reports):
    # Per evaluation of conv-BN-ReLU-conv-BN: conv1 saves its input, BN1 its input (conv1's output), ReLU its
    # output (which conv2 saves again: one storage), BN2 its input; each BN also saves mean and invstd (C each).
    per_eval = 4 * ACT + 2 * 2 * CHANNELS * 4
    for row in reports["euler"].units[1:-1]:
        assert row.saved_bytes == per_eval
    assert reports["rk4"].row("stage0.block0").saved_bytes == 4 * per_eval


@pytest.mark.parametrize("name, live", [("euler", 3), ("midpoint", 3), ("rk4", 4), ("verner89", 7)])
def test_inference_peak_in_activations(reports, name, live):
    """Activation-sized tensors live at the peak of a block, each layer of F being its own node.

    Inside F only a layer's input and output are live, plus y_n (kept for the final add, or for later stage
    inputs): Euler and midpoint 3. RK4 also keeps the running output y_n + sum b_j k_j (early accumulation
    frees each k_j at once): 4. Verner 8(9) is lowered with minimal registers: a basis of what later stages and
    the output still need, rank 5 at most, plus F's 2: 7 (keeping every k_j a later stage needs would take 12).
    The 4 (Euler) and 5 (RK4) activation-sized tensors one might count are allocator-level: on CPU, torch.profiler(profile_memory=True) sees
    one more activation-sized buffer inside each mkldnn convolution (plus a weight reorder), i.e. 4.28 and 5.28
    activations at 64 channels; the difference RK4 - Euler = 1 tensor, the running output, is the same.
    """
    for row in reports[name].units[1:-1]:
        assert row.inference_peak == live * ACT
    assert reports[name].total.relative["inference_peak"] == pytest.approx(live / 3)


@pytest.mark.parametrize("name", SCHEMES)
def test_flops_equal_at_equal_evaluations(reports, name):
    # FlopCounterMode counts convolutions and matmuls, not the RK adds: the same 28 evaluations cost the same.
    assert reports[name].total.flops == reports["euler"].total.flops > 0


def test_learned_step_saves_more(reports):
    fixed, learned = reports["verner89"].total, reports["verner89-adaptive"].total
    # k * h with h a parameter saves k: one activation more per evaluation.
    assert learned.saved_bytes == fixed.saved_bytes + 28 * ACT
    assert learned.parameters == fixed.parameters + 2


@pytest.mark.parametrize("path, parameters", [("specs/pendulum-odenet.yaml", 252),
                                               ("specs/continuousnet-2-2-2.yaml", 273_210)])
def test_shared_and_basis_weights_belong_to_the_stage(path, parameters):
    model = build(path)
    report = analyze(model, batch=2)
    assert report.total.parameters == parameters == sum(p.numel() for p in model.parameters())
    assert all(u.parameters == 0 for u in report.units if ".block" in u.label)
    assert sum(s.parameters for s in report.stages) + sum(u.parameters for u in report.units
                                                          if u.stage is None) == parameters


@pytest.mark.parametrize("path", ["specs/pendulum-odenet.yaml", "specs/continuousnet-2-2-2.yaml"])
def test_shared_and_basis_weights_measured(path):
    small = {"input.height": SIDE, "input.width": SIDE} if "continuousnet" in path else None
    report = analyze(build(path, overrides=small), batch=2, measure=True)
    for row in report.rows:
        for field in ("inference_peak", "saved_bytes", "training_peak"):
            assert getattr(row, f"measured_{field}") == pytest.approx(getattr(row, field), rel=0.05, abs=64)


def test_node_meta_records_costs():
    model = predict(_small("rk4"), batch=BATCH)
    conv = next(n for n in model.graph.nodes if n.name == "stage0_block0_k2_conv1")
    cost = conv.meta["cost"]
    assert cost["shape"] == (BATCH, CHANNELS, SIDE, SIDE) and cost["dtype"] == "float32"
    assert cost["bytes"] == ACT and cost["flops"] == 2 * BATCH * CHANNELS * CHANNELS * 9 * SIDE * SIDE


def test_dtype_scales_bytes():
    single = analyze(_small("rk4"), batch=BATCH)
    double = analyze(_small("rk4"), batch=BATCH, dtype=torch.float64)
    assert double.total.inference_peak == 2 * single.total.inference_peak
    assert double.total.parameter_bytes == 2 * single.total.parameter_bytes


def test_table_and_dict(reports):
    report = reports["rk4"]
    text = report.table()
    assert text == str(report) and "stage0.block6" in text and "meas. saved" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["total"]["relative"]["saved_bytes"] == 1.0
    with pytest.raises(KeyError, match="no row 'stage9'"):
        report.row("stage9")


def test_batch_of_one_vector_with_batchnorm():
    report = analyze("specs/spirals-rk4.yaml")  # BatchNorm1d on one sample: costed without running statistics
    assert report.total.saved_bytes > 0
    with pytest.raises(RkcompileError, match="needs batch >= 2"):
        analyze("specs/spirals-rk4.yaml", measure=True)
    with pytest.raises(RkcompileError, match="batch must be at least 1"):
        analyze("specs/pendulum-odenet.yaml", batch=0)


@pytest.mark.parametrize("path, overrides", [
    ("specs/continuousnet-8-8-8.yaml", {f"stages.{s}.steps": 4 for s in range(3)}),  # basis blocks repeat
    ("specs/resnet14-cifar10.yaml", {}),  # transition entries with a strided view and zero padding
    ("specs/ho-resnet58-verner89-adaptive.yaml", {}),  # a learned h per block
])
def test_repeated_units_are_copied_not_rerun_with_the_same_report(path, overrides, monkeypatch):
    from rkcompile.analysis import propagate

    model = build(path, overrides)
    calls = []
    run_module = propagate.CostInterpreter.call_module
    monkeypatch.setattr(propagate.CostInterpreter, "call_module",
                        lambda self, *a: calls.append(a[0]) or run_module(self, *a))
    copied = analyze(model, batch=2)
    run_once = len(calls)
    monkeypatch.setattr(propagate, "_repeatable_units", lambda module: {})
    calls.clear()
    assert analyze(model, batch=2) == copied  # every unit, stage, total and ratio identical
    assert run_once < len(calls)
