"""The experiments' statistics against hand-computed references, and the generated summary tables."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"rkcompile_experiments_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


stats = _load("stats")
summary = _load("summary")


def test_mean_ci_matches_hand_t_interval():
    ci = stats.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    # sd = sqrt(2.5); t_{0.975, 4} = 2.776445 (tables)
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert ci["mean"] == 3.0 and ci["sd"] == pytest.approx(math.sqrt(2.5))
    assert ci["lo"] == pytest.approx(3 - half, abs=1e-5) and ci["hi"] == pytest.approx(3 + half, abs=1e-5)
    one = stats.mean_ci([0.7])
    assert one["lo"] is None and stats.fmt_ci(one, 100) == "70.0"


def test_paired_differences_and_sign():
    p = stats.paired([0.9, 0.8, 0.85, 0.95], [0.8, 0.85, 0.75, 0.9])
    assert p["values"] == pytest.approx([0.1, -0.05, 0.1, 0.05])
    assert p["sign"] == "3/4" and p["mean"] == pytest.approx(0.05)
    assert stats.paired([1, 2, 3], [0, 1, 2.5])["excludes_zero"] is True
    with pytest.raises(ValueError, match="equal seed counts"):
        stats.paired([1, 2], [1])


def test_min_detectable_difference():
    # (1.959964 + 0.841621) * sqrt(2 * 0.9 * 0.1 / 1000) = 0.037585
    assert stats.min_detectable_difference(1000, 0.9) == pytest.approx(0.037585, abs=1e-5)
    assert stats.min_detectable_difference(360, 0.95) > stats.min_detectable_difference(1000, 0.95)


def test_threshold_interval():
    t = stats.threshold_interval([0.1, 0.2, 0.3, 0.4], [True, True, False, False])
    assert (t["trains_up_to"], t["fails_from"], t["monotone"]) == (0.2, 0.3, True)
    t = stats.threshold_interval([0.1, 0.2, 0.3], [True, False, True])
    assert t["monotone"] is False and t["fails_from"] == 0.2
    assert stats.threshold_interval([0.1, 0.2], [True, True])["fails_from"] is None
    with pytest.raises(ValueError, match="ascending"):
        stats.threshold_interval([0.2, 0.1], [True, True])


def test_summary_rows_are_validated(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "x.json").write_text(json.dumps({"claims": [{"claim": "c", "paper": "p", "measured": "m",
                                                                   "verdict": "maybe", "why": "w"}]}))
    with pytest.raises(ValueError, match="verdict"):
        summary.rows(tmp_path)
    (tmp_path / "x" / "x.json").write_text(json.dumps({"claims": [{"claim": "a|b", "paper": "p", "measured": "m",
                                                                   "verdict": "supported", "why": "w"}]}))
    text = summary.table(summary.rows(tmp_path))
    assert "| x | a\\|b (p) | m | **supported** | w |" in text
    assert summary.render("a\n<!-- summary:begin -->\nold\n<!-- summary:end -->\nb", "new") == (
        "a\n<!-- summary:begin -->\nnew\n<!-- summary:end -->\nb")


def test_readme_summary_tables_are_generated_from_results():
    assert summary.main(["--check"]) == 0
