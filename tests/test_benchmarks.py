"""The speed benchmark's smoke run, and the hand-written reference networks against the compiled ones."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import rkcompile
from rkcompile.compiler import build

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import handwritten  # noqa: E402
import speed  # noqa: E402

HAS_TORCHDIFFEQ = importlib.util.find_spec("torchdiffeq") is not None


def _cases():
    """(compiled, hand-written) builders covering each reference and its options."""
    ho, cn = ROOT / "specs" / "ho-resnet58-rk4.yaml", ROOT / "specs" / "continuousnet-8-8-8.yaml"
    ode = rkcompile.parse_spec(speed.ODE_SPEC.format(size=8, channels=4, steps=4))
    cn_steps = {f"stages.{s}.steps": 4 for s in range(3)}  # 4 steps over 8 pieces: every stage time on a boundary
    cn_fine = {f"stages.{s}.steps": 16 for s in range(3)}  # 16 steps over 8 pieces: each piece spans two steps
    skip = pytest.mark.skipif(not HAS_TORCHDIFFEQ, reason="torchdiffeq is not installed")
    return [
        pytest.param(lambda: build(ho, {"stages.0.evaluations": 8}), lambda: handwritten.HOResNet(8), id="ho-resnet"),
        pytest.param(lambda: build(cn, speed.largest_overrides(2)), lambda: handwritten.ContinuousNet(steps=2, pieces=2),
                     id="continuousnet-2-2-2"),
        pytest.param(lambda: build(cn, cn_steps), lambda: handwritten.ContinuousNet(steps=4, pieces=8),
                     id="continuousnet-steps4-pieces8"),
        pytest.param(lambda: build(cn, cn_fine), lambda: handwritten.ContinuousNet(steps=16, pieces=8),
                     id="continuousnet-steps16-pieces8"),
        pytest.param(lambda: build(ode), lambda: handwritten.ODENet(4, 4), id="odenet-loop"),
        pytest.param(lambda: build(ode), lambda: handwritten.ODENet(4, 4, solver="torchdiffeq"), id="odenet-torchdiffeq",
                     marks=skip),
    ]


@pytest.mark.parametrize("compiled, hand", _cases())
def test_hand_written_matches_compiled(compiled, hand):
    model, reference = compiled().double(), hand().double()
    assert handwritten.count_parameters(reference) == handwritten.count_parameters(model)
    handwritten.copy_weights(model, reference)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    for mode in (True, False):  # train mode (batch statistics), then eval mode (running statistics)
        model.train(mode)
        reference.train(mode)
        a, b = model(x), reference(x)
        assert (a - b).abs().max().item() < 1e-10
    a.sum().backward()
    b.sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-8, atol=1e-10)


def test_published_parameter_counts():
    assert handwritten.count_parameters(handwritten.HOResNet(28)) == 2_074_058  # Luo et al. 2022, Table 3 (2.07M)
    assert handwritten.count_parameters(handwritten.ContinuousNet()) == 857_850  # ContinuousNet's code, 8-8-8


def test_copy_weights_refuses_a_different_network():
    with pytest.raises(ValueError, match="tensors in the source state dict"):
        handwritten.copy_weights(handwritten.HOResNet(4), handwritten.HOResNet(8))


def test_basis_piece_uses_the_left_piece_on_a_boundary():
    from fractions import Fraction

    from rkcompile.lowering import piece_index

    for steps, pieces in ((2, 2), (4, 8), (16, 8), (3, 5)):
        for n in range(steps):
            for c in (Fraction(0), Fraction(1, 3), Fraction(1, 2), Fraction(1)):
                assert handwritten.basis_piece(n, c, steps, pieces) == piece_index(n, c, steps, pieces)


@pytest.mark.slow
def test_quick_run_writes_results(tmp_path):
    results = speed.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "speed.json").read_text())
    table = (tmp_path / "speed.md").read_text()
    assert saved["config"]["threads"] == 1 and saved["machine"]["torch_threads"] == 1
    assert set(saved["compile"]["times"]) == {"rkcompile.build(YAML file)", "of which load_spec (parse, validate)",
                                              "rkcompile.build(validated Spec)", "hand-written nn.Module"}
    variants = {row["network"]: set(row["times"]) for row in results["train"]}
    assert len(variants) == 3 and all({"rkcompile", "hand-written"} <= v for v in variants.values())
    assert sum("torch.compile(eager)" in name for v in variants.values() for name in v) == 2
    assert any("torchdiffeq odeint(rk4)" in v for v in variants.values()) == HAS_TORCHDIFFEQ
    for row in results["train"]:
        assert row["ratio"]["hand-written"]["median"] == 1.0
        assert max(row["max_abs_diff_vs_hand_written"].values()) < 1e-4
    draw = results["draw"]
    assert "skipped" in draw or {"to_dot(level=network)", "draw(svg, level=block)"} <= set(draw["times"])
    assert "| rkcompile | " in table and "**Compile time**" in table


def test_summary_and_interleaving():
    s = speed.summary([3.0, 1.0, 2.0, 4.0, 5.0])
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"], s["n"]) == (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    order = []
    speed.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 2)
    assert order == ["a", "b", "b", "a"]


@pytest.mark.slow
def test_compile_benchmark_smoke(tmp_path):
    import compile as compile_benchmark

    assert compile_benchmark.main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "compile.json").read_text())
    rows = {r["variant"]: r for r in results["rows"]}
    assert set(rows) == {"eager", "full", "regional"}
    assert all(r["max_abs_diff"] < 1e-5 and r["cold_s"] > 0 and r["step_ms"] > 0 for r in rows.values())
    assert rows["regional"]["compiled_regions"] == 3  # continuousnet-1-1-1: one block per stage width
    assert rows["regional"]["dynamo_graphs"] == 3 and rows["full"]["dynamo_graphs"] == 1  # dynamo's own count
    assert (tmp_path / "compile.png").stat().st_size > 0 and "| regional |" in (tmp_path / "compile.md").read_text()
    # --update reruns one variant and keeps the other rows, in a full run's order
    assert compile_benchmark.main(["--smoke", "--variants", "eager", "--out", str(tmp_path), "--update"]) == 0
    again = json.loads((tmp_path / "compile.json").read_text())
    assert [r["variant"] for r in again["rows"]] == ["eager", "regional", "full"]
    assert again["rows"][1:] == [rows["regional"], rows["full"]] and "load_average" in again["rows"][0]
    assert again["machine"]["updated"] == 1 and again["machine"]["total_s"] > results["machine"]["total_s"]
    assert "(1 row rerun by --update;" in (tmp_path / "compile.md").read_text()


@pytest.mark.slow
def test_compile_benchmark_steady_state_side_by_side(tmp_path):
    import compile as compile_benchmark

    assert compile_benchmark.main(["--smoke", "--steady", "--reps", "3", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "compile-steady.json").read_text())["rows"][0]
    assert set(row["times"]) == {"eager", "regional", "full"} and row["reps"] == 3
    assert all(t["min_ms"] <= t["median_ms"] for t in row["times"].values())
    assert row["regional_over_full"] == row["times"]["regional"]["median_ms"] / row["times"]["full"]["median_ms"]
    assert "| continuousnet-1-1-1 | 2×3×8×8 | 125 | regional |" in (tmp_path / "compile-steady.md").read_text()
    assert compile_benchmark.main(["--smoke", "--steady", "--reps", "3", "--input", "3,12", "--out", str(tmp_path)]) == 0
    assert "| continuousnet-1-1-1 | 3×3×12×12 | 125 | full |" in (tmp_path / "compile-steady-3x12.md").read_text()
    assert compile_benchmark.main(["--smoke", "--steady", "--reps", "3", "--channels-last", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "compile-steady-cl.json").read_text())["rows"][0]
    assert row["channels_last"] and "| 2×3×8×8 channels-last | 125 | eager |" in (tmp_path / "compile-steady-cl.md").read_text()


@pytest.mark.slow
def test_analysis_benchmark_smoke(tmp_path):
    import analysis as analysis_benchmark

    assert analysis_benchmark.main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "analysis.json").read_text())
    assert results["analysis"]["graph_nodes"] == 218 and results["analysis"]["ratio"] > 0
    assert [r["spec"] for r in results["draw"]] == ["continuousnet-2-2-2.yaml", "continuousnet-8-8-8.yaml"]
    assert results["first_meta_op"][0] > 0
    assert "over the first-meta-op process" in (tmp_path / "analysis.md").read_text()


def test_compile_table_bounds_a_stopped_full_compile_and_states_the_goals():
    import compile as compile_benchmark

    def row(point, variant, cold, step):
        return {"point": point, "variant": variant, "cold_s": cold, "step_ms": step, "max_abs_diff": 1e-7,
                "graph_nodes": 125, "units": 8, "structures": 8, "compiled_regions": 3, "dynamo_graphs": 3}

    stopped = {"point": "continuousnet-16-16-16", "variant": "full", "timed_out": True, "cold_s": None,
               "cold_s_at_least": 1000.0, "step_ms": None, "max_abs_diff": None}
    results = {"machine": {"platform": "p", "python": "3", "torch": "t", "threads": 2, "backend": "inductor",
                           "load_average_start": [1.0], "load_average_end": [2.0], "total_s": 9.0},
               "rows": [row("continuousnet-1-1-1", "regional", 40.0, 10.0), row("continuousnet-1-1-1", "full", 80.0, 8.0),
                        row("continuousnet-16-16-16", "regional", 50.0, 20.0), stopped]}
    table = compile_benchmark.table(results)
    assert "| continuousnet-16-16-16 | 125 | 8 / 8 / 3 | full | – | > 1000 (stopped) | – | – | – | – |" in table
    assert "| regional | 3 | 50.00 | < 0.05x | 20.0 | – |" in table  # 50 s against more than 1,000 s
    assert "- regional cold start, 16-16-16 / 1-1-1: 1.25x (goal ≤ 1.5x)" in table
    assert "- regional / full cold start at 16-16-16: < 0.05x (goal ≤ 0.25x)" in table
    assert "- regional / full steady state, continuousnet-1-1-1: 1.25x (goal ≤ 1.10x)" in table
    assert "steady state, continuousnet-16-16-16" not in table  # no full step time to compare with


def test_compile_benchmark_refuses_an_unknown_point(capsys):
    import compile as compile_benchmark

    with pytest.raises(SystemExit) as stop:
        compile_benchmark.main(["--points", "continuousnet-2-2-2"])
    assert stop.value.code == 2
    assert "unknown point 'continuousnet-2-2-2'; choose from continuousnet-1-1-1, " in capsys.readouterr().err
