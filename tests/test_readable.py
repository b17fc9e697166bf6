"""Output people read: coefficients as written (drawings, `tableaux NAME`), public torch functions in the code."""

from __future__ import annotations

import copy
import re
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import rkcompile
from rkcompile.cli import cli
from rkcompile.exact import is_decimal_text, parse_coefficient
from rkcompile.tableaux import get_tableau

SPIRALS = "specs/spirals-rk4.yaml"


def _dot(tmp_path: Path, *sets: str) -> str:
    out = tmp_path / "x.dot"
    args = ["draw", SPIRALS, "-o", str(out), "--level", "block", "--tableau-view", "dag"]
    result = CliRunner().invoke(cli, [*args, *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    return out.read_text()


def _edge_labels(dot: str) -> list[str]:
    return [m.strip('"') for m in re.findall(r'label=("[^"]*"|[-0-9.][^ \]]*) color', dot)]


def test_tsit5_drawing_keeps_its_decimals(tmp_path: Path):
    dot = _dot(tmp_path, "stages.0.integrator=tsit5", "stages.0.evaluations=6", "stages.0.step.h=0.5")
    labels = _edge_labels(dot)
    t = get_tableau("tsit5")
    # every a_ij·h and b_i·h edge, independently: the published decimal times h = 1/2, written out exactly
    expected = {Fraction(x) * Fraction(1, 2) for row in t.labels.A for x in row if Fraction(x)} | \
        {Fraction(x) * Fraction(1, 2) for x in t.labels.b if Fraction(x)}
    assert labels and all(is_decimal_text(x) for x in labels), labels
    assert {parse_coefficient(x) for x in labels} == expected
    assert "/1000" not in dot and "/2000" not in dot
    assert "t<SUB>0</SUB> + 0.161·h = 0.0805" in dot and "t<SUB>0</SUB> + 0.9800255409045097·h" in dot


def test_rational_and_irrational_coefficients_in_drawings(tmp_path: Path):
    dot = _dot(tmp_path, "stages.0.integrator=rk4-38", "stages.0.evaluations=4")
    assert {"1/3", "-1/3", "1/8", "3/8"} <= set(_edge_labels(dot))
    dot = _dot(tmp_path, "stages.0.integrator=verner89", "stages.0.evaluations=14")
    c5 = (2 + 2 * 6 ** 0.5) / 15  # Verner (1978): c_5 = (2 + 2 sqrt 6) / 15, shown to 4 digits
    assert f"t<SUB>0</SUB> + {c5:.4g}·h" in dot and "t<SUB>0</SUB> + 1/12·h = 1/12" in dot


def test_tableaux_shows_b_error_as_written():
    result = CliRunner().invoke(cli, ["tableaux", "tsit5"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("b_error"))
    texts = line.split("[", 1)[1].rstrip("]").split(", ")
    t = get_tableau("tsit5")
    assert [parse_coefficient(x) for x in texts] == list(t.b_error)  # exact, not rounded
    assert all(is_decimal_text(x) or x == "-1/66" for x in texts)  # b_embedded's last entry is written 1/66
    assert not re.search(r"\d{12,}/\d", line)


@pytest.mark.parametrize(("spec", "overrides"), [
    ("specs/vit-tiny-digits.yaml", None),
    ("specs/transformer-rk4-sequence.yaml", None),
    (SPIRALS, {"stages.0.module": {"kind": "layers", "layers": ["linear", "softplus", "linear", "gelu"]}}),
    (SPIRALS, {"stages.0.weights": {"kind": "basis", "functions": "linear", "pieces": 2}, "stages.0.evaluations": None,
               "stages.0.steps": 1, "stages.0.module": {"kind": "layers", "layers": ["linear", "gelu"]}}),
])
def test_generated_code_calls_public_torch_functions(spec, overrides):
    model = rkcompile.build(spec, overrides)
    assert "torch._C" not in model.code
    assert re.search(r"torch\.nn\.functional\.(gelu|softplus|linear)\(", model.code)


def test_public_names_run_the_same_functions():
    layers = ["linear", "softplus", "linear", "gelu"]
    model = rkcompile.build(SPIRALS, {"stages.0.module": {"kind": "layers", "layers": layers}}).double().eval()
    original = {"softplus": torch.nn.functional.softplus, "gelu": torch.nn.functional.gelu}
    graph = copy.deepcopy(model.graph)
    swapped = 0
    for node in graph.nodes:  # the C builtins themselves as targets: the code then reads torch._C._nn...
        if node.op == "call_function" and getattr(node.target, "__name__", "") in original:
            node.target = original[node.target.__name__]
            swapped += 1
    raw = torch.fx.GraphModule(model, graph)
    assert swapped == 2 * 20 and "torch._C._nn.softplus(" in raw.code  # 20 evaluations, gelu and softplus each
    x = torch.randn(6, 2, dtype=torch.float64)
    assert torch.equal(model(x), raw(x))
