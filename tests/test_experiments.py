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


def _smoke(name: str, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / f"{name}.py"), "--smoke", "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
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
    # the integrators on the true field converge at their orders even at smoke sizes
    assert data["numerical"]["rk4"]["slope_below"] == pytest.approx(4, abs=0.3)
    assert data["numerical"]["midpoint"]["slope_below"] == pytest.approx(2, abs=0.3)


@pytest.mark.slow
def test_stacking_smoke(tmp_path):
    data = _smoke("stacking", tmp_path)
    assert {"width", "budgets", "accuracy", "sweep", "table", "seconds"} <= set(data)
    schemes = {(r["scheme"], r["evaluations"]) for r in data["table"]}
    assert ("verner89", 28) in schemes and ("verner89", 4) not in schemes  # only where the budget divides
    for row in data["table"]:
        assert {"scheme", "evaluations", "blocks", "parameters", "test_acc_mean", "initial_loss"} <= set(row)
        assert 0 <= row["test_acc_mean"] <= 1 and _finite(row["test_acc_runs"])
    deepest = [r for r in data["table"] if r["evaluations"] == 28]
    assert len({r["parameters"] for r in deepest}) == 1  # equal parameters at one budget
    assert all("largest_lr_that_trains" in r for r in deepest)
    assert {r["lr"] for r in data["sweep"]["runs"]} == set(data["sweep"]["lrs"])
    assert all(isinstance(r["trains"], bool) for r in data["sweep"]["runs"])


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
def test_manifestation_smoke(tmp_path):
    data = _smoke("manifestation", tmp_path)
    assert {"width", "pieces", "epochs", "seeds", "steps", "runs", "table", "summary", "seconds"} <= set(data)
    assert {r["train"] for r in data["runs"]} == {"euler", "rk4"}
    for run in data["runs"]:
        assert set(run["eval"]) == {"euler", "midpoint", "rk4", "rk4-38"}
        for curve in run["eval"].values():
            assert len(curve["test_acc"]) == len(data["steps"])
    assert len(data["table"]) == 2 * 4 * len(data["steps"])
    assert sum(r["native"] for r in data["table"]) == 2           # one native manifestation per training scheme
    for row in data["table"]:
        assert 0 <= row["test_acc_mean"] <= 1 and _finite(row["test_acc_runs"])
    for row in data["summary"]:
        assert {"train", "native_acc", "worst_other_acc", "mean_other_acc", "largest_drop"} <= set(row)
        assert _finite(row)


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
    assert {"epochs", "runs", "summary", "time_saved", "time_saved_theory", "accuracy_difference",
            "seconds"} <= set(data)
    assert data["time_saved_theory"] == pytest.approx(5 / 12)
    assert data["summary"]["baseline"]["final_depth"] == data["summary"]["multilevel"]["final_depth"] == "8-8-8"
    assert data["summary"]["baseline"]["parameters"] == data["summary"]["multilevel"]["parameters"]
    for run in data["runs"]:
        if run["mode"] == "multilevel":
            assert [label for _, label in run["events"]] == ["interpolate", "interpolate"]
            assert [e["depth"] for e in run["epochs"]] == ["2-2-2", "4-4-4", "8-8-8"]
            assert run["final_h"] == ["1/4"] * 3
        assert len(run["epochs"]) == data["epochs"]
        assert 0 <= run["test_acc"] <= 1 and run["train_seconds"] > 0
    assert _finite({k: v for k, v in data.items() if k != "runs"})
