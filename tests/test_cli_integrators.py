"""`rkcompile integrators`, and the carried history in drawings and in the memory analysis."""

from __future__ import annotations

from click.testing import CliRunner

from rkcompile import analyze, parse_spec
from rkcompile import build as build_spec
from rkcompile.cli import cli
from rkcompile.multistep import list_multistep
from rkcompile.render import to_dot
from rkcompile.tableaux import list_tableaux


def build(text: str):
    """Compile a spec written as YAML text."""
    return build_spec(parse_spec(text))



def test_integrators_lists_both_families_with_order_history_and_stability():
    result = CliRunner().invoke(cli, ["integrators"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[1:-1]}
    assert set(rows) == set(list_tableaux()) | set(list_multistep())
    assert rows["ab4"][:5] == ["ab4", "multistep", "4", "1", "4"] and "strongly" in rows["ab4"]
    assert rows["rk4"][:5] == ["rk4", "rk", "4", "4", "1"]
    assert "weakly" in rows["leapfrog"] and "rest)" in rows["momentum"]


def test_integrators_name_shows_exact_coefficients_of_either_family():
    ab3 = CliRunner().invoke(cli, ["integrators", "ab3"])
    assert ab3.exit_code == 0 and "beta:  23/12, -4/3, 5/12" in ab3.output and "order 3" in ab3.output
    assert "order 4" in CliRunner().invoke(cli, ["integrators", "rk4"]).output


def test_integrators_unknown_name_is_one_line_exit_1():
    result = CliRunner().invoke(cli, ["integrators", "ab9"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: unknown tableau 'ab9'")
    assert "or a method of another family (multistep: ab2, ab3, ab4, leapfrog" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


SPEC = """
name: ms
seed: 0
input: {features: 4}
stages:
  - module: {kind: mlp, hidden: [6]}
    integrator: INTEGRATOR
    steps: 6
    weights: shared
"""


def test_drawings_show_edges_from_the_history_with_their_coefficients():
    dot = to_dot(build(SPEC.replace("INTEGRATOR", "ab3")), level="block")
    assert "ab3 (start-up: kutta3)" in dot  # the two start-up blocks
    assert 'stage0_block2_f1 -> stage0_block2_y_out [label="-4/3"' in dot  # β_1·h for f_{n−1}, h = 1
    assert 'stage0_block2_f2 -> stage0_block2_y_out [label="5/12"' in dot
    assert "a multistep step's history" in dot  # the legend says what the purple edges are
    # every edge shows its coefficient times h, the history's too: h = 1/2 halves them all, once
    half = to_dot(build(SPEC.replace("INTEGRATOR", "ab3") + "    step: {h: 1/2}\n"), level="block")
    assert 'stage0_block2_k1 -> stage0_block2_y_out [label="23/24"' in half  # β_0·h, f_n = k_1
    assert 'stage0_block2_f1 -> stage0_block2_y_out [label="-2/3"' in half
    assert 'stage0_block2_f2 -> stage0_block2_y_out [label="5/24"' in half
    assert "a multistep step's history" not in to_dot(build(SPEC.replace("INTEGRATOR", "rk4")), level="block")
    lm = to_dot(build(SPEC.replace("INTEGRATOR", "lm-resnet")), level="block")
    assert "stage0_block3_y1 -> stage0_block3_y_out [label=<k<SUB>3</SUB>·(1)>" in lm
    leap = to_dot(build(SPEC.replace("INTEGRATOR", "leapfrog")), level="block")
    assert 'stage0_block2_y1 -> stage0_block2_y_out [label=1' in leap
    assert "stage0_block2_y_in -> stage0_block2_y_out" not in leap.replace("label=skip", "")  # no skip: α_0 = 0


def test_the_history_is_live_state_in_the_memory_analysis():
    euler = analyze(build(SPEC.replace("INTEGRATOR", "euler").replace("steps: 6", "steps: 12")), batch=64)
    ab4 = analyze(build(SPEC.replace("INTEGRATOR", "ab4").replace("steps: 6", "steps: 12")), batch=64)
    state = 64 * 4 * 4  # one float32 state tensor
    # AB4 keeps f_{n−1}, f_{n−2}, f_{n−3} alive across each step: three more states than Euler at its peak
    assert ab4.total.inference_peak - euler.total.inference_peak >= 2 * state
    assert ab4.total.parameters == euler.total.parameters


def test_predicted_memory_of_multistep_stages_matches_the_measured():
    import pytest

    for integrator in ("ab4", "lm-resnet", "{method: momentum, learn: true}", "second-order"):
        report = analyze(build(SPEC.replace("INTEGRATOR", integrator)), batch=16, measure=True)
        for row in report.rows:
            for field in ("inference_peak", "saved_bytes", "training_peak"):
                predicted, measured = getattr(row, field), getattr(row, f"measured_{field}")
                assert measured == pytest.approx(predicted, rel=0.05, abs=64), (integrator, row.label, field)
