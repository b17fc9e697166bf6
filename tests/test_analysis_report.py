"""The analysis report as a user reads it: per-unit columns, ratios to the named Euler baseline, training totals
(weights, gradients, optimizer state) against independent counts, and the JSON/CSV records of `rkcompile analyze`."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from click.testing import CliRunner

from rkcompile.analysis import analyze
from rkcompile.analysis.optimizer import OPTIMIZERS
from rkcompile.analysis.report import RECORD_FIELDS
from rkcompile.cli import cli
from rkcompile.cli_options import OPTIMIZER_NAMES
from rkcompile.compiler import build
from rkcompile.errors import RkcompileError
from rkcompile.load import parse_spec

# An MLP whose first stage interpolates linear-basis weights: RK4 shares the weights of k_2 and k_3 (same time),
# so it saves less than Euler, and before the fix every later unit's "training" carried that difference.
MLP = """
name: mlp
input: {features: 4}
stem: {kind: layers, layers: [{kind: linear, features: 16}, tanh]}
stages:
  - features: 16
    module: {kind: mlp, hidden: [32], act: tanh}
    integrator: rk4
    steps: 3
    weights: {kind: basis, functions: linear, pieces: 3}
    step: {T: 1}
  - features: 16
    module: {kind: mlp, hidden: [32], act: relu}
    integrator: midpoint
    evaluations: 4
output: {classes: 3}
"""
IMAGES = """
name: images
input: {channels: 3, height: 8, width: 8}
stem: {kind: conv, channels: 8, kernel: 3}
stages:
  - channels: 8
    module: basic
    integrator: rk4
    evaluations: 8
    weights: {kind: basis, functions: linear, pieces: 2}
  - channels: 16
    entry: transition
    module: basic
    integrator: kutta3
    evaluations: 6
output: {classes: 10}
"""


def _model(text: str, **fields):
    return build(parse_spec(text, fields or None))


@pytest.fixture(scope="module")
def mlp():
    return analyze(_model(MLP), batch=2)


@pytest.fixture(scope="module")
def mlp_euler():
    return analyze(_model(MLP, **{"stages.0.integrator": "euler", "stages.0.steps": 12,
                                  "stages.1.integrator": "euler"}), batch=2)


def test_units_identical_in_every_scheme_have_ratio_one(mlp, mlp_euler):
    # the baseline saves more in stage 0, so a running peak would make the head look 1.2x lighter
    assert mlp.total.saved_bytes != mlp_euler.total.saved_bytes
    for label in ("stem", "head"):
        mine, theirs = mlp.row(label), mlp_euler.row(label)
        assert (mine.inference_peak, mine.saved_bytes, mine.training_peak) == \
            (theirs.inference_peak, theirs.saved_bytes, theirs.training_peak)
        assert all(mine.relative[f] == 1.0 for f in ("inference_peak", "saved_bytes", "training_peak",
                                                      "training_total", "flops")), label
    report = analyze(_model(IMAGES), batch=2)
    entry = report.row("stage1.entry")
    assert {k: v for k, v in entry.relative.items()} == dict.fromkeys(entry.relative, 1.0)


def test_training_is_per_unit_and_the_running_peak_its_own_column(mlp):
    units = mlp.units
    running = [u.running_peak for u in units]
    assert running == sorted(running) and running[-1] == mlp.total.running_peak == mlp.total.training_peak
    for u in units:
        assert u.saved_bytes <= u.training_peak <= u.running_peak
    # the head runs last: its own training peak is its input and output and what it saves, not the network's
    head = mlp.row("head")
    assert head.training_peak < mlp.row("stage1.block1").running_peak
    # a stage's training peak: each unit's own on top of what the stage's earlier units saved
    blocks = [u for u in units if u.stage == 1]
    assert mlp.row("stage1").training_peak == max(blocks[0].training_peak,
                                                   blocks[0].saved_bytes + blocks[1].training_peak)


def test_block_ratios_compare_with_the_euler_blocks_of_the_same_evaluations():
    rk4 = analyze(_model(IMAGES), batch=2)
    euler = analyze(_model(IMAGES, **{"stages.0.integrator": "euler", "stages.1.integrator": "euler"}), batch=2)
    for b in range(2):
        row = rk4.row(f"stage0.block{b}")
        group = [euler.row(f"stage0.block{4 * b + i}") for i in range(4)]
        assert row.evaluations == 4
        assert row.relative["saved_bytes"] == pytest.approx(row.saved_bytes / sum(g.saved_bytes for g in group))
        assert row.relative["flops"] == pytest.approx(1.0)
        assert row.relative["inference_peak"] == pytest.approx(
            row.inference_peak / max(g.inference_peak for g in group))
        own = max(sum(g.saved_bytes for g in group[:i]) + group[i].training_peak for i in range(4))
        assert row.relative["training_peak"] == pytest.approx(row.training_peak / own)
    kutta3 = rk4.row("stage1.block1")  # per-evaluation weights: three Euler blocks hold the same parameters
    assert kutta3.evaluations == 3 and kutta3.relative["parameters"] == 1.0
    assert rk4.row("stage0.block0").relative["parameters"] is None  # basis weights: blocks own none (0 / 0)


@pytest.mark.parametrize("optimizer, dtype", [("sgd", torch.float32), ("sgd-momentum", torch.float64),
                                              ("adam", torch.bfloat16), ("adamw", torch.float16)])
def test_training_total_against_an_independent_count(optimizer, dtype):
    model = _model(IMAGES)
    report = analyze(model, batch=2, dtype=dtype, optimizer=optimizer)
    itemsize = torch.empty((), dtype=dtype).element_size()
    params = list(model.parameters())
    count = sum(p.numel() for p in params)
    states = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}[optimizer]
    step = 4 * len(params) if optimizer.startswith("adam") else 0
    buffers = sum(b.numel() * (itemsize if b.is_floating_point() else b.element_size()) for b in model.buffers())
    t = report.total
    assert t.parameter_bytes == count * itemsize and t.gradient_bytes == count * itemsize
    assert t.optimizer_bytes == states * count * itemsize + step and t.buffer_bytes == buffers
    assert t.training_total == t.training_peak + (2 + states) * count * itemsize + step + buffers
    assert sum(r.training_total for r in report.units) + sum(
        s.weight_bytes + s.gradient_bytes + s.optimizer_bytes - sum(
            u.weight_bytes + u.gradient_bytes + u.optimizer_bytes for u in report.units if u.stage == s.stage)
        for s in report.stages) >= t.training_total - t.training_peak  # every weight is in some row


@pytest.mark.parametrize("optimizer, make", [
    ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1)),
    ("sgd-momentum", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    ("adam", lambda ps: torch.optim.Adam(ps)),
    ("adamw", lambda ps: torch.optim.AdamW(ps)),
])
def test_optimizer_and_gradient_bytes_are_what_torch_allocates(optimizer, make):
    model = _model(IMAGES)
    report = analyze(model, batch=2, optimizer=optimizer)
    opt = make(model.parameters())
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    state = sum(t.untyped_storage().nbytes() for s in opt.state.values() for t in s.values()
                if isinstance(t, torch.Tensor))
    grads = sum(p.grad.untyped_storage().nbytes() for p in model.parameters())
    assert report.total.optimizer_bytes == state and report.total.gradient_bytes == grads
    assert set(OPTIMIZERS) == set(OPTIMIZER_NAMES)


def test_bad_optimizer_and_dtype():
    with pytest.raises(RkcompileError, match=r"unknown optimizer 'adamm' \(did you mean 'adam'\?\): expected one of "
                                             r"sgd, sgd-momentum, adam, adamw"):
        analyze(_model(MLP), optimizer="adamm")
    with pytest.raises(RkcompileError, match="dtype must be a floating-point torch.dtype, found torch.int32"):
        analyze(_model(MLP), dtype=torch.int32)


def test_table_says_what_each_column_is_and_what_the_baseline_is(mlp):
    lines = mlp.table().splitlines()
    assert lines[0] == "mlp  (batch 2, float32, optimizer sgd-momentum)"
    assert lines[1] == ("ratios (×euler) are to the same network as forward Euler at equal evaluations of F per "
                        "stage, at equal parameters (stage0 12 Euler steps for 3 rk4 blocks, stage1 4 Euler steps "
                        "for 2 midpoint blocks; nothing checkpointed)")
    header = lines[2].split("  ")
    assert [h.strip() for h in header if h.strip()] == [
        "unit", "evals", "params", "weights", "inference", "saved", "training", "peak so far", "train total",
        "MFLOP", "inference ×euler", "saved ×euler", "training ×euler", "train total ×euler"]
    labels = [line.split("  ")[0].strip() for line in lines[3:12]]
    assert labels == ["stem", "stage0.block0", "stage0.block1", "stage0.block2", "stage0 (whole stage)",
                      "stage1.block0", "stage1.block1", "stage1 (whole stage)", "head"]
    assert lines[12].startswith("total")
    block = lines[4].split()  # block rows carry ratios too
    assert block[-4:] != ["", "", "", ""] and all(x.replace(".", "").isdigit() for x in block[-4:])
    legend = "\n".join(lines[13:])
    for text in ("peak so far  the network's training activation peak from the input to the end of the row",
                 "train total  training + weights + gradients + optimizer state (sgd-momentum: 1 momentum buffer",
                 "bytes are per row, not cumulative", "×euler       this row over the baseline's"):
        assert text in legend


def test_table_of_a_network_that_is_already_euler():
    report = analyze(_model(MLP, **{"stages.0.integrator": "euler", "stages.1.integrator": "euler"}), batch=2,
                     optimizer="adam")
    assert report.total.relative is not None  # still filled (all 1), but not printed
    lines = report.table().splitlines()
    assert lines[0] == "mlp  (batch 2, float32, optimizer adam)"
    assert lines[1] == "no ratio columns: the network is forward Euler throughout, so it is its own baseline"
    assert "×euler" not in report.table() and lines[2].split()[-1] == "MFLOP"


def test_baseline_with_other_parameters_says_so():
    report = analyze("specs/ho-resnet58-verner89-adaptive.yaml", batch=1)
    assert "with 2,074,086 parameters against 2,074,060 (per-block step sizes" in report.baseline
    assert report.total.relative["parameters"] == pytest.approx(2_074_060 / 2_074_086)


def _cli(*args):
    return CliRunner().invoke(cli, ["analyze", *args])


def test_cli_json_and_csv_records(tmp_path):
    spec = tmp_path / "mlp.yaml"
    spec.write_text(MLP)
    result = _cli(str(spec), "--json", "--batch", "2", "--optimizer", "adam", "--dtype", "float64")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    report = analyze(_model(MLP), batch=2, optimizer="adam", dtype=torch.float64)
    assert (data["name"], data["batch"], data["dtype"], data["optimizer"]) == ("mlp", 2, "float64", "adam")
    assert data["baseline"] == report.baseline and data["fields"] == list(RECORD_FIELDS)
    assert [r["label"] for r in data["records"]] == [r.label for r in report.network_order()]
    assert [r["kind"] for r in data["records"]].count("stage") == 2 and data["records"][-1]["kind"] == "total"
    total = data["records"][-1]
    assert total["training_total"] == report.total.training_total and total["parameters"] == 7_635
    assert total["ratio_saved_bytes"] == pytest.approx(report.total.relative["saved_bytes"])
    result = _cli(str(spec), "--csv", "--batch", "2", "--optimizer", "adam", "--dtype", "float64")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == list(RECORD_FIELDS) and len(rows) == len(data["records"])
    for line, record in zip(rows, data["records"], strict=True):
        assert line["label"] == record["label"] and int(line["training_total"]) == record["training_total"]
        assert line["measured_saved_bytes"] == "" and record["measured_saved_bytes"] is None


def test_cli_bad_analysis_options(tmp_path):
    spec = tmp_path / "mlp.yaml"
    spec.write_text(MLP)
    result = _cli(str(spec), "--json", "--csv")
    assert result.exit_code == 2 and "give --json or --csv, not both" in result.output
    result = _cli(str(spec), "--optimizer", "rmsprop")
    assert result.exit_code == 2 and "'rmsprop' is not one of 'sgd', 'sgd-momentum', 'adam', 'adamw'" in result.output
    result = _cli(str(spec), "--dtype", "int8")
    assert result.exit_code == 2 and "'int8' is not one of 'float32', 'float64', 'bfloat16', 'float16'" in result.output
