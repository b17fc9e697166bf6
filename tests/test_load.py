"""Spec loading: the corpus of invalid specs gives located one-line errors; valid specs load; overrides work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rkcompile
from rkcompile import SpecError, load_spec, parse_spec

INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))
SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.yaml"))


def expectation(path: Path) -> tuple[int, str]:
    """Each corpus file starts with `# expect LINE: message fragment` (LINE 0: any line)."""
    m = re.match(r"# expect (\d+): (.*)", path.read_text().splitlines()[0])
    assert m, f"{path.name} lacks its '# expect LINE: message' header"
    return int(m.group(1)), m.group(2)


def test_corpus_is_large_enough():
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_spec_gives_located_error(path: Path):
    line, fragment = expectation(path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:"), message
    if line:
        assert message.startswith(f"{path}:{line}:"), message
        assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", message), message
    assert fragment in message, message


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_specs_are_valid(path: Path):
    spec = load_spec(path)
    assert spec.name == path.stem
    for stage in spec.stages:
        assert stage.blocks >= 1
        assert stage.total_evaluations == stage.blocks * stage.tableau.stages


def test_error_class_hierarchy():
    assert issubclass(SpecError, rkcompile.RkcompileError)
    assert issubclass(rkcompile.CompileError, SpecError)
    assert issubclass(rkcompile.TableauError, rkcompile.RkcompileError)


def test_text_input_and_shorthands():
    spec = parse_spec("name: t\ninput: {features: 2}\nstages:\n  - {module: {kind: mlp, hidden: [3]}, steps: 4,"
                     " weights: shared, integrator: rk4, step: {T: 2}}\n")
    stage = spec.stages[0]
    assert stage.weights.kind == "shared" and stage.blocks == 4 and stage.h == 0.5
    assert stage.total_evaluations == 16


def test_evaluation_budget_sets_blocks():
    spec = load_spec(Path("specs/ho-resnet58-verner89.yaml"))
    stage = spec.stages[0]
    assert stage.tableau.stages == 14  # stages 15-16 only serve error estimation and are pruned
    assert stage.blocks == 2 and stage.total_evaluations == 28


def test_overrides_change_and_validate():
    spec = load_spec("specs/ho-resnet58-euler.yaml", ["stages.0.integrator=rk4"])
    assert spec.stages[0].integrator == "rk4" and spec.stages[0].blocks == 7
    with pytest.raises(SpecError, match=r"stages\[0\]\.evaluations: .*nearest valid budgets: 24, 28"):
        load_spec("specs/ho-resnet58-euler.yaml", {"stages.0.integrator": "rk4", "stages.0.evaluations": 26})
    with pytest.raises(SpecError, match=r"--set: stages\[3\]: index 3 out of range"):
        load_spec("specs/ho-resnet58-euler.yaml", ["stages.3.integrator=rk4"])
    with pytest.raises(SpecError, match=r"expected PATH=VALUE"):
        load_spec("specs/ho-resnet58-euler.yaml", ["stages.0.integrator"])
    spec = load_spec("specs/pendulum-odenet.yaml", ["stages.0.steps=null", "stages.0.evaluations=8"])
    assert spec.stages[0].steps is None and spec.stages[0].blocks == 2


def test_missing_file_and_directory(tmp_path: Path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)


def test_oversized_spec_is_rejected(tmp_path: Path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# padding\n" * 200_000)
    with pytest.raises(SpecError, match="larger than"):
        load_spec(big)


def test_non_utf8(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(bad)
