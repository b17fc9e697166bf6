"""Smoke runs of every experiment (tiny sizes): each writes its JSON with the expected keys and finite numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(ROOT / "experiments" / f"{name}.py"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _smoke(name: str, out: Path) -> dict:
    result = _run(name, "--smoke", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / f"{name}.png").stat().st_size > 1000
    return json.loads((out / f"{name}.json").read_text())


def _numbers(value) -> list[float]:
    """Every number in a JSON value."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [value]
    items = value.values() if isinstance(value, dict) else value
    return [n for item in items for n in _numbers(item)]


def _finite(data) -> bool:
    return all(math.isfinite(n) for n in _numbers(data))


@pytest.mark.slow
def test_pendulum_smoke(tmp_path):
    data = _smoke("pendulum", tmp_path)
    assert {"dt_data", "T", "dts", "numerical", "runs", "table", "dip_sweep", "seconds"} <= set(data)
    assert (tmp_path / "pendulum-trajectories.png").exists() and (tmp_path / "pendulum-dip.png").exists()
    assert {r["train"] for r in data["runs"]} == {"euler", "midpoint", "rk4"}
    for run in data["runs"]:
        assert set(run["eval"]) == {"euler", "midpoint", "rk4"}  # every G in every scheme: interchange
        for curve in run["eval"].values():
            assert len(curve["error"]) == len(data["dts"]) and _finite(curve["error"])
    assert len(data["table"]) == 9
    for row in data["table"]:
        assert {"train", "eval", "e_opt", "at_dt_data", "dip_ratio", "slope_above", "slope_below"} <= set(row)
        assert _finite(row)
    for run in data["runs"]:                                     # held-out starts: a curve per start, and its mean
        for curve in run["heldout"].values():
            assert len(curve["per_start"]) == len(data["heldout_starts"]) and len(curve["error"]) == len(data["dts"])
            assert curve["dip"] is not None and curve["dip"] >= 0   # log10(floor / min over the grid)
    assert {r["seed"] for r in data["dip_sweep"]} == set(data["seeds"]) and len(data["seeds"]) >= 2
    _claims_ok(data)
    # the integrators on the true field converge at their orders even at smoke sizes
    assert data["numerical"]["rk4"]["slope_below"] == pytest.approx(4, abs=0.3)
    assert data["numerical"]["midpoint"]["slope_below"] == pytest.approx(2, abs=0.3)


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    """One MNIST-1D cache directory for the experiments' smoke runs (never the user's ~/.cache)."""
    return tmp_path_factory.mktemp("xdg-cache")


def _claims_ok(data: dict) -> None:
    assert data["claims"], "no summary rows"
    for row in data["claims"]:
        assert set(row) == {"claim", "paper", "measured", "verdict", "why"}
        assert row["verdict"] in ("supported", "contradicted", "undecided") and row["measured"]


@pytest.mark.slow
def test_stacking_smoke(tmp_path, monkeypatch, mnist1d_cache):
    monkeypatch.setenv("XDG_CACHE_HOME", str(mnist1d_cache))
    data = _smoke("stacking", tmp_path)
    assert {"dataset", "selection", "accuracy", "sweep", "table", "comparisons", "thresholds", "claims",
            "integration_time", "min_detectable_difference", "seconds", "machine_start", "machine_end"} <= set(data)
    assert data["dataset"] == "mnist1d" and len(data["seeds"]) >= 2
    # the lr is chosen on the validation split with a seed none of the reported runs uses
    assert data["selection"]["seed"] not in data["seeds"]
    assert data["accuracy"]["lr"] == data["selection"]["chosen_lr"] in data["selection"]["lrs"]
    best = max(data["selection"]["lrs"], key=lambda lr: sum(r["val_acc"] for r in data["selection"]["runs"]
                                                            if r["lr"] == lr))
    assert data["selection"]["chosen_lr"] == best
    # equal parameters (the plain baseline too), T = blocks x h: the equal-T control matches RK4's T
    assert len({r["parameters"] for r in data["table"]}) == 1
    assert data["integration_time"]["euler"] == 8 and data["integration_time"]["rk4"] == 2
    assert data["integration_time"]["euler h=1/4"] == data["integration_time"]["rk4"]
    for row in data["table"]:
        assert row["test_acc"]["n"] == len(data["seeds"]) and _finite(row["test_acc"]["values"])
    pairs = {(c["a"], c["b"]) for c in data["comparisons"]}
    assert ("rk4", "euler") in pairs and ("rk4", "euler h=1/4") in pairs
    for run in data["sweep"]["runs"]:
        assert run["outcome"] in ("trains", "poor", "stuck", "diverged")
        assert (run["outcome"] == "diverged") == (run["diverged"] or run["val_loss"] is None)
    for th in data["thresholds"].values():
        assert set(th["per_seed"]) == {str(s) for s in data["seeds"]}
    _claims_ok(data)


@pytest.mark.slow
def test_spirals_smoke(tmp_path):
    data = _smoke("spirals", tmp_path)
    assert {"depths", "epochs", "runs", "table", "seconds"} <= set(data)
    assert {r["model"] for r in data["table"]} == {"plain", "resnet", "euler", "heun", "rk4"}
    for depth in data["depths"]:
        rows = [r for r in data["table"] if r["depth"] == depth]
        assert len({r["parameters"] for r in rows}) == 1  # the same parameters at one depth
        evaluations = {r["model"]: r["evaluations"] for r in rows}
        assert evaluations == {"plain": depth, "resnet": depth, "euler": depth, "heun": 2 * depth, "rk4": 4 * depth}
    for row in data["table"]:
        assert 0 <= row["test_acc"] <= 1 and _finite(row)


@pytest.mark.slow
def test_manifestation_smoke(tmp_path, monkeypatch, mnist1d_cache):
    monkeypatch.setenv("XDG_CACHE_HOME", str(mnist1d_cache))
    data = _smoke("manifestation", tmp_path)
    assert {"dataset", "selection", "seeds", "steps", "runs", "table", "drops", "claims", "seconds"} <= set(data)
    assert data["selection"]["seed"] not in data["seeds"]
    assert {r["scheme"] for r in data["runs"]} == {"euler", "rk4"}
    assert len({r["parameters"] for r in data["runs"]}) == 1
    for run in data["runs"]:
        assert set(run["eval"]) == {"euler", "midpoint", "rk4"}
        for curve in run["eval"].values():
            for key in ("test_acc", "recal_test_acc"):
                assert len(curve[key]) == len(data["steps"]) and _finite(curve[key])
    assert len(data["table"]) == 2 * 3 * len(data["steps"]) * 2       # train x eval x steps x (as is, re-calibrated)
    assert sum(r["native"] for r in data["table"]) == 2 * 2
    native = [r for r in data["table"] if r["native"] and not r["recalibrated"]]
    for row in native:  # the training manifestation's change from itself is exactly zero for every seed
        drop = next(d for d in data["drops"] if d["eval"] == row["train"] and d["steps"] == row["steps"]
                    and not d["recalibrated"])
        assert drop["change"][row["train"]]["values"] == [0.0] * len(data["seeds"])
    _claims_ok(data)


@pytest.mark.slow
def test_bases_smoke(tmp_path):
    data = _smoke("bases", tmp_path)
    assert {"width", "m", "epochs", "reference_steps", "steps", "runs", "summary", "seconds"} <= set(data)
    assert [r["basis"] for r in data["runs"]] == ["constant", "linear", "shared-film"]
    assert len({r["parameters"] for r in data["runs"][:2]}) == 1  # M pieces and M nodes: the same parameters
    assert data["runs"][2]["parameters"] < data["runs"][0]["parameters"]  # one time-conditioned F
    for run in data["runs"]:
        assert set(run["eval"]) == {"euler", "midpoint", "rk4"}
        for rows in run["eval"].values():
            assert [r["steps"] for r in rows] == data["steps"] and _finite([r["logit_error"] for r in rows])
    assert not any(r["aligned"] for rows in data["runs"][2]["eval"].values() for r in rows)  # no pieces to align
    assert len(data["summary"]) == 9


@pytest.mark.slow
def test_multilevel_smoke(tmp_path):
    data = _smoke("multilevel", tmp_path)
    assert {"epochs", "runs", "summary", "time_saved", "time_saved_theory", "accuracy_difference", "tuning",
            "claims", "seconds", "load_average"} <= set(data)
    assert data["time_saved_theory"] == pytest.approx(5 / 12)
    summary = data["summary"]
    assert {m: s["final_depth"] for m, s in summary.items()} == {"baseline": "8-8-8", "baseline-h4": "8-8-8",
                                                                 "multilevel": "8-8-8"}
    assert len({s["parameters"] for s in summary.values()}) == 1
    assert summary["baseline"]["final_h"] == ["1"] * 3 and summary["baseline-h4"]["final_h"] == ["1/4"] * 3
    # every mode's lr and warm-up come from the validation runs, which never see the test set
    tuning = data["tuning"]
    assert all(run["validation"] for run in tuning["runs"]) and not any(run["validation"] for run in data["runs"])
    assert 0 < tuning["validation_size"] and tuning["train_size"] <= data["train_size"]  # carved from the training set
    for mode, chosen in tuning["chosen"].items():
        assert (summary[mode]["lr"], summary[mode]["warmup"]) == (chosen["lr"], chosen["warmup"])
        best = max(r["eval_acc"] for r in tuning["runs"] if r["mode"] == mode and not r["diverged"])
        assert chosen["validation_acc"] == best
    for run in data["runs"]:
        if run["mode"] == "multilevel":
            assert [label for _, label in run["events"]] == ["interpolate", "interpolate"]
            assert [e["depth"] for e in run["epochs"]] == ["2-2-2", "4-4-4", "8-8-8"]
            assert run["final_h"] == ["1/4"] * 3
        assert len(run["epochs"]) == data["epochs"]
        assert 0 <= run["eval_acc"] <= 1 and run["train_seconds"] > 0 and run["train_cpu_seconds"] > 0
    assert len(data["time_saved"]["baseline"]["cpu"]["values"]) == len(data["seeds"]) >= 2
    assert data["accuracy_difference"]["baseline"]["sign"].endswith(f"/{len(data['seeds'])}")
    _claims_ok(data)
    assert _finite({k: v for k, v in data.items() if k not in ("runs", "tuning")})


@pytest.mark.slow
def test_rk_transformer_smoke(tmp_path):
    data = _smoke("rk_transformer", tmp_path)
    assert {"task", "seeds", "runs", "summary", "differences", "claims", "seconds", "load_average"} <= set(data)
    assert data["equal_parameters"] is True
    summary = data["summary"]
    assert {n: (s["blocks"], s["T"]) for n, s in summary.items()} == {
        "euler": (8, 8), "rk4": (2, 2), "euler-h1/4": (8, 2)}  # the equal-T control: Euler at RK4's T
    assert {r["seed"] for r in data["runs"]} == set(data["seeds"]) and len(data["seeds"]) >= 2
    for run in data["runs"]:
        assert 0 <= run["test_token_acc"] <= 1 and run["curve"]
    d = data["differences"]["rk4 - euler (h = 1 both)"]
    rk4, euler = (summary[n]["test_token_acc"]["values"] for n in ("rk4", "euler"))
    assert d["values"] == pytest.approx([a - b for a, b in zip(rk4, euler)])
    _claims_ok(data)


@pytest.mark.slow
def test_memory_depth_smoke(tmp_path):
    data = _smoke("memory_depth", tmp_path)
    assert {"batch", "depths", "methods", "rows", "growth", "reversible", "claims", "seconds"} <= set(data)
    peaks = {(r["method"], r["depth"]): r["measured_training_peak"] for r in data["rows"]}
    deep = max(data["depths"])
    assert peaks[("checkpoint-min", deep)] < peaks[("backprop", deep)]   # the planner saves memory
    assert all(peaks[("backprop", a)] < peaks[("backprop", b)] for a, b in zip(data["depths"], data["depths"][1:]))
    assert data["max_prediction_error"] < 0.01                           # measured = predicted
    assert ("momentum-reversible" in data["methods"]) == (data["reversible"] == "measured")
    _claims_ok(data)


@pytest.mark.slow
def test_compile_depth_smoke(tmp_path):
    data = _smoke("compile_depth", tmp_path)
    assert {"source", "rows", "expected_points", "missing", "fits", "claims"} <= set(data)
    have = {f"{r['point']} {r['variant']}" for r in data["rows"]}
    assert set(data["missing"]) == set(data["expected_points"]) - have
    _claims_ok(data)


def test_compile_depth_reports_missing_and_unreadable_results(tmp_path):
    rows = [{"point": "continuousnet-1-1-1", "variant": v, "cold_s": c, "graph_nodes": 125}
            for v, c in (("full", 100.0), ("regional", 50.0))] + [
           {"point": "continuousnet-4-4-4", "variant": v, "cold_s": c, "graph_nodes": 404}
            for v, c in (("full", 400.0), ("regional", 51.0))]
    source = tmp_path / "compile.json"
    source.write_text(json.dumps({"machine": {"load_average_start": [1.0]}, "rows": rows}))
    result = _run("compile_depth", "--source", str(source), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "note: the results lack continuousnet-1-1-1 eager" in result.stdout
    data = json.loads((tmp_path / "out" / "compile_depth.json").read_text())
    assert data["fits"]["full"]["ratio"] == pytest.approx(4.0) and data["fits"]["regional"]["ratio"] == pytest.approx(1.02)
    assert data["fits"]["full"]["exponent"] == pytest.approx(math.log(4) / math.log(404 / 125))
    assert data["claims"][0]["verdict"] == "supported"
    source.write_text("{not json")
    result = _run("compile_depth", "--source", str(source), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and result.stderr.startswith(f"error: {source}: cannot read")
    assert "Traceback" not in result.stderr
    source.write_text(json.dumps({"rows": [{"point": "x"}]}))
    result = _run("compile_depth", "--source", str(source), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "rows[0]: missing variant, cold_s, graph_nodes" in result.stderr


def test_batch_norm_recalibration_re_estimates_statistics_and_keeps_the_original():
    import importlib.util

    import torch

    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("rkcompile_exp_manifestation", ROOT / "experiments" / "manifestation.py")
    manifestation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(manifestation)
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 1, bias=False), torch.nn.BatchNorm1d(2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[2.0]], [[-1.0]]]))
    x = 3 + 0.5 * torch.randn(700, 1, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = model.state_dict()
    new = manifestation.recalibrate(model, x, batch=250)
    features = torch.cat([2 * x, -x], 1).transpose(0, 1).reshape(2, -1)     # what the BN sees, per channel
    # cumulative averages over the 3 batches (250, 250, 200) of the batch mean and the unbiased batch variance
    batches = [features[:, 9 * i:9 * j] for i, j in ((0, 250), (250, 500), (500, 700))]
    mean = sum(b.mean(1) for b in batches) / 3
    var = sum(b.var(1) for b in batches) / 3
    assert torch.allclose(new[1].running_mean, mean, atol=1e-12) and torch.allclose(new[1].running_var, var, atol=1e-12)
    assert not new.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(new[0].weight, model[0].weight)   # weights untouched
