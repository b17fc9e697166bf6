"""Cautions: valid specs that waste weights or lose accuracy silently are warned about, one located line each."""

from __future__ import annotations

import glob
import math
import warnings
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import rkcompile
from rkcompile.cautions import cautions, straddled_boundaries, unused_functions
from rkcompile.cli import cli
from rkcompile.errors import RkcompileWarning
from rkcompile.load import load_spec, parse_spec

BASIS = """\
name: basis10
input: {features: 4}
stem: {kind: layers, layers: [{kind: linear, features: 8}, tanh]}
stages:
  - name: body
    features: 8
    module: {kind: mlp, hidden: [16]}
    integrator: rk4
    steps: 1
    weights: {kind: basis, pieces: 10}
    step: {T: 1}
output: {classes: 3}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "basis10.yaml"
    path.write_text(BASIS)
    return path


def _open_set_piece(s: Fraction, c: Fraction, pieces: int) -> int:
    """Queiruga et al. 2020's rule, written out again: floor(s M), a stage time (c > 0) on a boundary goes left."""
    x = s * pieces
    p = math.floor(x)
    if c > 0 and x == p:
        p -= 1
    return min(max(p, 0), pieces - 1)


def _sampled(steps: int, pieces: int, c=(Fraction(0), Fraction(1, 2), Fraction(1, 2), Fraction(1))) -> set[int]:
    return {_open_set_piece((b + ci) / steps, ci, pieces) for b in range(steps) for ci in c}


@pytest.mark.parametrize(("steps", "pieces"), [(1, 10), (2, 10), (3, 8), (4, 4), (1, 1), (5, 12)])
def test_unused_pieces_are_those_no_rk4_evaluation_samples(steps: int, pieces: int):
    spec = parse_spec(BASIS, [f"stages.0.steps={steps}", f"stages.0.weights.pieces={pieces}"])
    assert unused_functions(spec.stages[0]) == sorted(set(range(pieces)) - _sampled(steps, pieces))


def test_unused_pieces_are_exactly_the_parameters_without_gradient(spec_file: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RkcompileWarning)
        model = rkcompile.build(spec_file)
    model(torch.randn(5, 4)).sum().backward()
    no_grad = {name.split(".")[1] for name, p in model.named_parameters() if p.grad is None}
    assert no_grad == {f"piece{p}" for p in (1, 2, 3, 5, 6, 7, 8)}
    assert unused_functions(model.spec.stages[0]) == [1, 2, 3, 5, 6, 7, 8]


def test_check_prints_each_caution_as_one_located_warning_line(spec_file: Path):
    result = CliRunner().invoke(cli, ["check", str(spec_file)])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert warned == [
        f"warning: {spec_file}:10:5: stages[0].weights: pieces 1, 2, 3, 5, 6, 7, 8 of 10 are never evaluated (1 step "
        "of rk4): their weights get no gradient (DistributedDataParallel then needs find_unused_parameters=True); "
        "use more steps or fewer pieces",
        f"warning: {spec_file}:10:5: stages[0].weights: 9 of the 9 boundaries between the 10 pieces of theta(t) lie "
        "inside a step (1 step of rk4): theta(t) jumps there, and a step across a jump integrates at first order; "
        "use a multiple of 10 steps"]


def test_build_with_an_artifact_warns_once_per_caution(spec_file: Path, tmp_path: Path):
    result = CliRunner().invoke(cli, ["build", str(spec_file), "-o", str(tmp_path / "m.pt")])
    assert result.exit_code == 0, result.output
    assert sum(line.startswith("warning: ") for line in result.output.splitlines()) == 2


def test_python_warnings_carry_the_located_text(spec_file: Path):
    with pytest.warns(RkcompileWarning, match=r"basis10\.yaml:10:5: stages\[0\]\.weights: pieces 1, 2, 3, 5, 6, 7, 8 "):
        load_spec(spec_file)


def test_a_caution_caused_by_a_set_is_located_at_the_set(spec_file: Path):
    result = CliRunner().invoke(cli, ["check", str(spec_file), "--set", "stages.0.steps=10",
                                      "--set", "stages.0.step.epsilon=0"])
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("warning: ")] == [
        "warning: --set stages.0.step.epsilon=0: stages[0].step.epsilon: epsilon 0 multiplies every evaluation of F "
        "by zero: the stage is the identity and its F's weights get no gradient"]


@pytest.mark.parametrize(("functions", "size", "steps", "inside"), [
    ("constant", 2, 1, [Fraction(1, 2)]),
    ("constant", 2, 2, []),
    ("constant", 4, 6, [Fraction(1, 4), Fraction(3, 4)]),
    ("constant", 3, 6, []),
    ("linear", 4, 2, [Fraction(1, 3), Fraction(2, 3)]),
    ("linear", 3, 2, []),
])
def test_straddled_boundaries_are_breakpoints_strictly_inside_a_step(functions, size, steps, inside):
    spec = parse_spec(BASIS, [f"stages.0.steps={steps}",
                              f"stages.0.weights={{kind: basis, functions: {functions}, pieces: {size}}}"])
    found = straddled_boundaries(spec.stages[0])
    assert found == inside
    # independently: a breakpoint x lies inside step b iff b/steps < x < (b+1)/steps for some b
    cells = size if functions == "constant" else size - 1
    expected = [Fraction(k, cells) for k in range(1, cells)
                if any(Fraction(b, steps) < Fraction(k, cells) < Fraction(b + 1, steps) for b in range(steps))]
    assert found == expected


def test_euler_legendre_and_multistep_stages_straddle_nothing():
    euler = parse_spec(BASIS, ["stages.0.integrator=euler", "stages.0.steps=3", "stages.0.weights.pieces=2"])
    legendre = parse_spec(BASIS, ["stages.0.steps=1", "stages.0.weights={kind: basis, functions: legendre, degree: 3}"])
    ab2 = parse_spec(BASIS, ["stages.0.integrator=ab2", "stages.0.steps=5", "stages.0.weights.pieces=2"])
    assert [straddled_boundaries(s.stages[0]) for s in (euler, legendre, ab2)] == [[], [], []]


def test_linear_basis_straddle_message(spec_file: Path):
    spec = load_spec(spec_file, ["stages.0.steps=2", "stages.0.weights={kind: basis, functions: linear, pieces: 4}"])
    assert cautions(spec) == [
        "--set stages.0.weights={kind: basis, functions: linear, pieces: 4}: stages[0].weights: 2 of the 2 "
        "boundaries between the 3 elements of theta(t) lie inside a step (2 steps of rk4): theta(t) has a kink "
        "there, and a step across a kink loses the integrator's order; use a multiple of 3 steps"]


def test_shared_f_with_batch_norm_is_cautioned_but_not_without_or_per_evaluation():
    rk4 = "specs/ho-resnet58-rk4.yaml"
    shared = load_spec(rk4, ["stages.0.weights=shared"])
    assert cautions(shared) == [
        "--set stages.0.weights=shared: stages[0].weights: one shared F with batchnorm keeps one set of running "
        "statistics for all 28 evaluations, at different times t: in eval mode each is normalised by statistics "
        "mixed over times; use basis or per-evaluation weights (a BatchNorm each), or a groupnorm/layernorm"]
    assert cautions(load_spec(rk4)) == []
    no_norm = load_spec("specs/pendulum-odenet.yaml")
    assert no_norm.stages[0].weights.kind == "shared" and cautions(no_norm) == []


def test_epsilon_zero_of_a_stitch_is_cautioned():
    spec = load_spec("specs/continuousnet-2-2-2.yaml", ["stages.1.entry.epsilon=0"])
    assert cautions(spec) == [
        "--set stages.1.entry.epsilon=0: stages[1].entry.epsilon: epsilon 0 drops the stitch's R(x): only its "
        "shortcut remains, and R's weights get no gradient"]


@pytest.mark.parametrize("path", sorted(glob.glob("specs/*.yaml")), ids=lambda p: Path(p).stem)
def test_shipped_specs_need_no_caution(path: str):
    assert cautions(load_spec(path)) == []


def test_a_transformation_warns_about_the_model_it_makes():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RkcompileWarning)
        model = rkcompile.build("specs/continuousnet-2-2-2.yaml")  # 2 steps over 2 pieces: aligned, no warning
    with pytest.warns(RkcompileWarning) as record:
        rkcompile.remanifest(model, steps=3, stage=0)
    assert [str(w.message) for w in record] == [
        "remanifest: stages[0].weights: the boundary between the 2 pieces of theta(t) lies inside a step "
        "(3 steps of rk4): theta(t) jumps there, and a step across a jump integrates at first order; use a "
        "multiple of 2 steps"]


# ---------------------------------------------------------------- build's table adds up
TABLE_SPECS = [
    ("basis10", None),
    ("specs/continuousnet-2-2-2.yaml", ["stages.0.weights.pieces=10", "stages.0.steps=1"]),
    ("specs/resnet14-cifar10.yaml", ["stages.0.weights={kind: basis, pieces: 10}"]),
    ("specs/pendulum-odenet.yaml", None),
    ("specs/ho-resnet58-verner89-adaptive.yaml", None),
    ("specs/vit-tiny-digits.yaml", None),
    ("specs/lm-resnet20-cifar10.yaml", None),
]


@pytest.mark.parametrize(("path", "sets"), TABLE_SPECS, ids=[p for p, _ in TABLE_SPECS])
def test_build_table_rows_add_up_to_the_total_line(spec_file: Path, path: str, sets):
    source = str(spec_file) if path == "basis10" else path
    args = ["build", source, *(a for s in sets or () for a in ("--set", s))]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # warnings go to stderr
    header = lines[1]
    assert header.split()[:4] == ["unit", "integrator", "evaluations", "parameters"]
    # cells by the header's column positions (the 'of which not F' column, where present, has spaces in it)
    starts = [header.index(name) for name in ("unit", "integrator", "evaluations", "parameters")]
    ends = [*starts[1:], header.index("of which not F") if "of which not F" in header else None]

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in zip(starts, ends)]

    rows = [cells(line) for line in lines[2:]]
    total = rows[-1]
    assert total[0] == "total"
    body = rows[:-1]
    assert sum(int(r[3].replace(",", "")) for r in body) == int(total[3].replace(",", ""))
    assert sum(int(r[2]) for r in body if r[2] != "-") == int(total[2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RkcompileWarning)
        model = rkcompile.build(source, list(sets or ()), device="meta")
    assert int(total[3].replace(",", "")) == sum(p.numel() for p in model.parameters())



def test_the_documented_warnings_are_the_real_ones():
    doc = (Path(__file__).parent.parent / "docs" / "spec.md").read_text()
    text = doc.split("```yaml spec\nname: unused-pieces\n", 1)[1].split("```", 1)[0]
    shown = [line.removeprefix("warning: ") for line in doc.splitlines() if line.startswith("warning: net.yaml:")]
    assert len(shown) == 2
    with pytest.warns(RkcompileWarning):
        spec = parse_spec("name: unused-pieces\n" + text, file="net.yaml")
    assert cautions(spec) == shown
