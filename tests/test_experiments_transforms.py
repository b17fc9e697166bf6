"""Smoke runs of the transformation experiments (manifestation invariance, multi-level training): tiny sizes."""

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
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [value]
    items = value.values() if isinstance(value, dict) else value
    return [n for item in items for n in _numbers(item)]


def _finite(data) -> bool:
    return all(math.isfinite(n) for n in _numbers(data))


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
