"""examples/train.py: one-line errors for bad input, smoke runs on digits and spirals, and DDP with 2 processes."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rkcompile

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "train.py"

TINY_DIGITS = """\
name: tiny-digits
seed: 0
input: {channels: 1, height: 8, width: 8}
stem: {kind: conv, channels: 4, act: relu}
stages:
  - channels: 4
    module: {kind: basic, after: none}
    integrator: midpoint
    evaluations: 2
output: {classes: 10}
"""

TINY_SPIRALS = """\
name: tiny-spirals
seed: 0
input: {features: 2}
stem: {kind: layers, layers: [{kind: linear, features: 4}, tanh]}
stages:
  - features: 4
    module: {kind: layers, layers: [linear, tanh]}
    integrator: heun
    evaluations: 2
output: {classes: 2}
"""


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


train = _module("rkcompile_example_train", SCRIPT)
datasets = train.data  # examples/datasets.py, as the script imports it


@pytest.fixture
def specs(tmp_path):
    (tmp_path / "digits.yaml").write_text(TINY_DIGITS)
    (tmp_path / "spirals.yaml").write_text(TINY_SPIRALS)
    return tmp_path


def _run(*args: str, cwd=ROOT, launcher=None, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, *(launcher or []), str(SCRIPT), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- bad input: one line, no traceback
@pytest.mark.parametrize(
    ("args", "message", "status"),
    [
        (["--dataset", "mnist"], "error: argument --dataset: invalid choice: 'mnist'", 2),
        (["--dataset", "cifar10"], "error: cifar10 needs --data-root DIR holding cifar-10-batches-py/", 1),
        (["--dataset", "cifar10", "--data-root", "{tmp}/nowhere"],
         "error: CIFAR-10 not found: {tmp}/nowhere/cifar-10-batches-py does not exist", 1),
        (["--dataset", "spirals"],
         "error: spec 'tiny-digits' takes images 1x8x8 but dataset 'spirals' gives vectors of 2 features", 1),
        (["--dataset", "pendulum"],
         "error: spec 'tiny-digits' takes images 1x8x8 but dataset 'pendulum' gives vectors of 2 features", 1),
        (["--dataset", "digits", "--set", "output.classes=3"],
         "error: spec 'tiny-digits' outputs (3,) per sample but dataset 'digits' needs 10 classes", 1),
        (["--dataset", "digits", "--set", "stages.0.integratr=rk4"],
         "error: --set stages.0.integratr=rk4: stages[0].integratr: unknown field 'integratr' (did you mean "
         "'integrator'?)", 1),
        (["--dataset", "digits", "--schedule", "1:refine", "--epochs", "2"],
         "error: --schedule: epoch 1: refine: no stage to transform", 1),
        (["--dataset", "digits", "--schedule", "1:grow"],
         "error: --schedule: unknown event 'grow'; expected one of refine, interpolate, remanifest, fold", 1),
        (["--dataset", "digits", "--schedule", "12:interpolate"],
         "error: --schedule: epoch 12 of '12:interpolate' is not inside the run (1 ... 9)", 1),
        (["--dataset", "digits", "--epochs", "0"], "error: --epochs must be at least 1, found 0", 2),
    ],
)
def test_bad_input_is_one_line(specs, capsys, args, message, status):
    args = [a.replace("{tmp}", str(specs)) for a in args]
    with pytest.raises(SystemExit) if status == 2 else contextlib.nullcontext():
        code = train.main(["--spec", str(specs / "digits.yaml"), *args])
        assert code == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(message.replace("{tmp}", str(specs))), err


def test_vector_specs_are_checked_against_the_head(specs, capsys):
    pendulum = str(ROOT / "specs" / "pendulum-odenet.yaml")
    assert train.main(["--spec", pendulum, "--dataset", "spirals"]) == 1
    assert capsys.readouterr().err == ("error: spec 'pendulum-odenet' has no classification head but dataset "
                                       "'spirals' has 2 classes (add `output: {classes: 2}`)\n")
    assert train.main(["--spec", str(specs / "spirals.yaml"), "--dataset", "pendulum"]) == 1
    assert capsys.readouterr().err == ("error: spec 'tiny-spirals' ends in a classification head (2 classes) but "
                                       "dataset 'pendulum' is a regression of 2 values (remove `output`)\n")
    assert train.main(["--spec", str(specs / "missing.yaml"), "--dataset", "digits"]) == 1
    assert capsys.readouterr().err == f"error: --spec: no such file: {specs / 'missing.yaml'}\n"


def test_a_regression_head_trains_on_a_regression_dataset(specs, tmp_path, capsys):
    pendulum = str(ROOT / "specs" / "pendulum-odenet.yaml")
    head = ["--set", "output={kind: regression, outputs: 2, norm: layernorm}"]
    assert train.main(["--spec", pendulum, *head, "--dataset", "pendulum", "--epochs", "1", "--threads", "1",
                       "--quiet", "--out", str(tmp_path / "run")]) == 0
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert log["final"]["parameters"] == 2 * 50 + 50 + 50 * 2 + 2 + (2 + 2) + (2 * 2 + 2)  # G, layernorm, linear
    assert train.main(["--spec", pendulum, *head, "--dataset", "spirals"]) == 1
    assert capsys.readouterr().err.endswith("error: spec 'pendulum-odenet' ends in a regression head (2 outputs) but "
                                            "dataset 'spirals' has 2 classes (use `output: {classes: 2}`)\n")


def test_the_command_line_shows_no_traceback(specs):
    result = _run("--spec", str(specs / "digits.yaml"), "--dataset", "spirals")
    assert result.returncode == 1
    assert result.stderr == ("error: spec 'tiny-digits' takes images 1x8x8 but dataset 'spirals' gives vectors "
                             "of 2 features\n")


# ---------------------------------------------------------------- datasets
def test_pendulum_matches_a_tight_numerical_solution():
    from scipy.integrate import solve_ivp

    t = np.linspace(0.0, 6.0, 61)
    exact = datasets.pendulum_state(t)
    assert exact[0] == pytest.approx([3 * math.pi / 4, 0.0], abs=1e-12)
    solution = solve_ivp(lambda _, x: datasets.pendulum_field(x), (0.0, 6.0), exact[0], t_eval=t, method="DOP853",
                         rtol=1e-12, atol=1e-12)
    assert np.abs(solution.y.T - exact).max() < 1e-9
    period = datasets.pendulum_period()
    assert datasets.pendulum_state(period) == pytest.approx(exact[0], abs=1e-9)


def test_generated_datasets_are_deterministic():
    x1, y1 = datasets.spirals(200, seed=3)
    x2, y2 = datasets.spirals(200, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (200, 2) and set(y1.tolist()) == {0, 1}
    digits = datasets.load("digits")
    assert (len(digits.train), len(digits.test)) == (1437, 360)
    assert digits.train[0][0].shape == (1, 8, 8) and digits.classes == 10
    pendulum = datasets.load("pendulum", dt=0.05)
    x, y = pendulum.train[0]
    assert torch.allclose(y, torch.tensor(datasets.pendulum_state(0.05), dtype=torch.float32))


# ---------------------------------------------------------------- smoke runs
def test_digits_one_epoch_writes_logs_and_an_artifact(specs, tmp_path):
    out = tmp_path / "run"
    result = _run("--spec", str(specs / "digits.yaml"), "--dataset", "digits", "--epochs", "1", "--threads", "1",
                  "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1" in result.stdout
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert len(rows) == 1 and set(rows[0]) >= {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"}
    log = json.loads((out / "log.json").read_text())
    assert log["world_size"] == 1 and log["final"]["test_acc"] > 0.1  # better than chance after one epoch
    model = rkcompile.load(out / "model.pt")
    assert model.spec.name == "tiny-digits"
    assert sum(p.numel() for p in model.parameters()) == log["final"]["parameters"]


def test_signal_specs_and_mnist1d_are_checked_against_each_other(specs, capsys, monkeypatch, tmp_path):
    pytest.importorskip("mnist1d")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert train.main(["--spec", "specs/resnet1d-signals.yaml", "--dataset", "digits"]) == 1
    assert capsys.readouterr().err == ("error: spec 'resnet1d-signals' takes signals of 1 channel x 40 samples but "
                                       "dataset 'digits' gives images 1x8x8\n")
    assert train.main(["--spec", str(specs / "digits.yaml"), "--dataset", "mnist1d"]) == 1
    assert capsys.readouterr().err == ("error: spec 'tiny-digits' takes images 1x8x8 but dataset 'mnist1d' gives "
                                       "signals of 1 channel x 40 samples\n")


@pytest.mark.slow
def test_mnist1d_one_epoch_with_a_signal_spec(tmp_path):
    pytest.importorskip("mnist1d")
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    command = [sys.executable, str(SCRIPT), "--spec", "specs/resnet1d-signals.yaml", "--set",
               "stages.0.evaluations=4", "--dataset", "mnist1d", "--epochs", "1", "--threads", "1",
               "--optimizer", "adam", "--lr", "0.01", "--out", str(out), "--no-progress"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    log = json.loads((out / "log.json").read_text())
    assert log["dataset"] == "mnist1d" and log["final"]["test_acc"] > 0.2  # chance is 0.1
    assert list((tmp_path / "cache" / "rkcompile").glob("mnist1d-*.npz"))


def test_spirals_with_a_scheduled_interpolation(specs, tmp_path):
    out = tmp_path / "run"
    result = _run("--spec", str(specs / "spirals.yaml"), "--dataset", "spirals", "--epochs", "2", "--threads", "1",
                  "--optimizer", "adam", "--lr", "0.01", "--lr-schedule", "cosine", "--schedule", "1:interpolate",
                  "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    log = json.loads((out / "log.json").read_text())
    assert log["events"] == [{"epoch": 1, "event": "interpolate"}]
    # printed 1-based like the epoch lines: after "epoch 1/2", before "epoch 2/2"
    assert "after epoch 1/2: interpolate -> 102 parameters" in result.stderr, result.stderr
    first, second = log["history"]
    assert (first["parameters"], second["parameters"]) == (12 + 40 + 10, 12 + 80 + 10)  # a second block of 2 x F
    assert all(math.isfinite(v) for row in log["history"] for v in row.values())
    model = rkcompile.load(out / "model.pt")
    assert model.spec.stages[0].blocks == 2  # 1 heun block became 2


@pytest.mark.slow
def test_distributed_data_parallel_with_two_processes(specs, tmp_path):
    out = tmp_path / "ddp"
    result = _run("--spec", str(specs / "digits.yaml"), "--dataset", "digits", "--epochs", "3", "--out", str(out),
                  "--no-progress", launcher=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
                  timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("epoch 3/3") == 1  # only rank 0 reports
    log = json.loads((out / "log.json").read_text())
    assert log["world_size"] == 2
    losses = [row["train_loss"] for row in log["history"]]
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0]
    assert rkcompile.load(out / "model.pt").spec.name == "tiny-digits"


# ---------------------------------------------------------------- resume, progress, quiet
def _weights(path: Path) -> dict:
    return rkcompile.load(path).state_dict()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_two_epochs_equal_one_plus_a_resumed_one(specs, tmp_path, capsys, optimizer):
    common = ["--spec", str(specs / "spirals.yaml"), "--dataset", "spirals", "--optimizer", optimizer,
              "--lr", "0.05", "--batch-size", "32", "--quiet"]
    assert train.main([*common, "--epochs", "2", "--out", str(tmp_path / "whole")]) == 0
    assert train.main([*common, "--epochs", "1", "--out", str(tmp_path / "first")]) == 0
    resumed = [*common, "--epochs", "2", "--out", str(tmp_path / "resumed"),
               "--resume", str(tmp_path / "first" / "checkpoint.pt")]
    assert train.main(resumed) == 0
    assert capsys.readouterr().out == ""  # --quiet: no epoch summaries
    whole, again = _weights(tmp_path / "whole" / "model.pt"), _weights(tmp_path / "resumed" / "model.pt")
    assert whole.keys() == again.keys() and all(torch.equal(whole[k], again[k]) for k in whole)
    assert not all(torch.equal(whole[k], _weights(tmp_path / "first" / "model.pt")[k]) for k in whole)
    rows = [list(csv.DictReader(open(tmp_path / run / "log.csv"))) for run in ("whole", "resumed")]
    assert [(r["epoch"], r["train_loss"], r["test_acc"]) for r in rows[0]] == [
        (r["epoch"], r["train_loss"], r["test_acc"]) for r in rows[1]]
    # the checkpoint is an rkcompile artifact read with weights_only=True: rkcompile.load reads it as a model
    assert rkcompile.load(tmp_path / "resumed" / "checkpoint.pt").spec.name == "tiny-spirals"


def test_resume_restores_the_optimizer_state(specs, tmp_path, capsys):
    """Resuming from weights alone (a fresh momentum buffer) would not give the uninterrupted run's weights."""
    common = ["--spec", str(specs / "spirals.yaml"), "--dataset", "spirals", "--lr", "0.05", "--quiet"]
    assert train.main([*common, "--epochs", "1", "--out", str(tmp_path / "first")]) == 0
    state = torch.load(tmp_path / "first" / "checkpoint.pt", weights_only=True)["training"]
    momentum = [s["momentum_buffer"] for s in state["schedule"]["optimizer"]["state"].values()]
    assert momentum and all(torch.is_tensor(m) and m.abs().sum() > 0 for m in momentum)
    assert state["epoch"] == 1 and len(state["history"]) == 1


@pytest.mark.parametrize("case, message, status", [
    ("artifact", "error: {tmp}/first/model.pt: a model without training state (written by rkcompile.save, not by "
                 "train.py --out): nothing to resume; train from its spec instead", 1),
    ("missing", "error: {tmp}/nope.pt: no such file", 1),
    ("done", "error: --resume: {tmp}/first/checkpoint.pt has already run 1 epochs; give --epochs above 1", 1),
    ("nothing", "error: give --spec (or --resume CHECKPOINT) (see --help)", 2),
])
def test_bad_resume_is_one_line(specs, tmp_path, capsys, case, message, status):
    assert train.main(["--spec", str(specs / "spirals.yaml"), "--dataset", "spirals", "--epochs", "1", "--quiet",
                       "--out", str(tmp_path / "first")]) == 0
    args = {"artifact": ["--resume", str(tmp_path / "first" / "model.pt"), "--epochs", "2"],
            "missing": ["--resume", str(tmp_path / "nope.pt"), "--epochs", "2"],
            "done": ["--resume", str(tmp_path / "first" / "checkpoint.pt"), "--epochs", "1"],
            "nothing": []}[case]
    capsys.readouterr()
    with pytest.raises(SystemExit) if status == 2 else contextlib.nullcontext():
        assert train.main(["--dataset", "spirals", *args]) == status
    err = capsys.readouterr().err
    assert err == message.replace("{tmp}", str(tmp_path)) + "\n"


def test_progress_bars_on_a_terminal_only(specs, capsys, monkeypatch):
    args = ["--spec", str(specs / "spirals.yaml"), "--dataset", "spirals", "--epochs", "1"]
    assert train.main(args) == 0
    assert capsys.readouterr().err == ""  # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    import functools

    import tqdm

    # redraw on every batch: an epoch faster than tqdm's 0.1 s refresh interval would otherwise show no postfix
    monkeypatch.setattr(tqdm, "tqdm", functools.partial(tqdm.tqdm, mininterval=0))
    assert train.main(args) == 0
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and "epoch 0" not in captured.err  # 1-based, like the epoch lines
    assert "batch" in captured.err and "loss=" in captured.err
    assert "samples_s=" in captured.err and "epoch 1/1" in captured.out
    assert train.main([*args, "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")


def test_a_shipped_spec_by_name(tmp_path, capsys):
    assert train.main(["--spec", "spirals-rk4", "--dataset", "spirals", "--epochs", "1", "--quiet",
                       "--out", str(tmp_path)]) == 0
    assert rkcompile.load(tmp_path / "model.pt").spec.name == "spirals-rk4"
    assert train.main(["--spec", "spirals-rk5", "--dataset", "spirals"]) == 1
    assert "no shipped spec of that name (did you mean 'spirals-rk4'?)" in capsys.readouterr().err


@pytest.mark.slow
def test_regional_compile_trains(specs, tmp_path):
    out = tmp_path / "regional"
    result = _run("--spec", str(specs / "digits.yaml"), "--dataset", "digits", "--epochs", "1", "--threads", "1",
                  "--compile", "regional", "--out", str(out), "--no-progress", timeout=600)
    assert result.returncode == 0, result.stderr
    log = json.loads((out / "log.json").read_text())
    assert math.isfinite(log["final"]["train_loss"]) and log["final"]["test_acc"] > 0.1


def test_unknown_compile_mode_is_a_usage_error(specs):
    result = _run("--spec", str(specs / "digits.yaml"), "--dataset", "digits", "--compile", "partial")
    assert result.returncode == 2
    assert "argument --compile: invalid choice: 'partial' (choose from 'full', 'regional')" in result.stderr


def test_a_spec_caution_is_one_warning_line(tmp_path, capsys):
    spec = tmp_path / "pieces.yaml"
    spec.write_text(TINY_SPIRALS.replace("    evaluations: 2\n", "    evaluations: 2\n    weights: {kind: basis, pieces: 3}\n"))
    assert train.main(["--spec", str(spec), "--dataset", "spirals", "--epochs", "1", "--quiet",
                       "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "stages[0].weights" in line]
    # an unused piece and a step across a jump, each one line located in the spec, as the rkcompile CLI says them
    assert len(warned) == 2 and all(line.startswith(f"warning: {spec}:10:5: ") for line in warned), err
    assert "RkcompileWarning" not in err and "warnings.warn" not in err
