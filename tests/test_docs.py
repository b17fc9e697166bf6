"""docs/spec.md stays true: its complete specs load, its errors are the real messages, its facts hold."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import yaml

from rkcompile import SpecError, build, load_spec, parse_spec
from rkcompile.cli import stage_table
from rkcompile.lowering import piece_index
from rkcompile.spec import ACTIVATIONS
from rkcompile.tableaux import get_tableau, list_tableaux

DOC = (Path(__file__).parent.parent / "docs" / "spec.md").read_text()
BLOCKS = re.findall(r"^```(\w+)( \w+)?\n(.*?)^```$", DOC, flags=re.M | re.S)
SPECS = [text for lang, mark, text in BLOCKS if lang == "yaml" and mark == " spec"]
ERRORS = [(text, BLOCKS[i + 1][2].strip()) for i, (lang, mark, text) in enumerate(BLOCKS) if mark == " error"]


def spec_id(text: str) -> str:
    """The spec's name, for test ids."""
    return yaml.safe_load(text)["name"]


def test_doc_has_examples():
    assert len(SPECS) >= 4 and len(ERRORS) >= 3


@pytest.mark.parametrize("text", SPECS, ids=spec_id)
def test_complete_spec_loads(text):
    spec = parse_spec(text, file="example.yaml")
    assert spec.name == spec_id(text)


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[f"error{i}" for i in range(len(ERRORS))])
def test_error_example_is_the_real_message(text, message):
    assert message.startswith("example.yaml:")
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="example.yaml")
    assert str(info.value) == message


@pytest.mark.parametrize("text", [t for lang, mark, t in BLOCKS if lang == "yaml" and not mark])
def test_fragments_are_yaml(text):
    assert yaml.safe_load(text) is not None


def test_worked_example_table_is_printed_as_shown():
    spec = parse_spec(SPECS[0])
    for line in stage_table(spec).splitlines():
        assert f"\n  {line}\n" in DOC, line
    assert parse_spec(SPECS[0], ["stages.0.integrator=verner89"]).stages[0].blocks == 2


def test_every_builtin_tableau_is_listed():
    for name in list_tableaux():
        assert f"`{name}`" in DOC, name
    rows = re.findall(r"^\| (`[\w-]+`(?:, `[\w-]+`)*) \| (\d+) \| (\d+) \|", DOC, flags=re.M)
    named = {name: (int(stages), int(order)) for names, stages, order in rows for name in re.findall(r"`(.+?)`", names)}
    assert set(named) == set(list_tableaux())
    for name, facts in named.items():
        assert (get_tableau(name).stages, get_tableau(name).order) == facts, name


def test_every_activation_is_listed():
    section = DOC[DOC.index("### Activations"):DOC.index("## Shorthands")]
    for name in ACTIVATIONS:
        assert f"`{name}`" in section, name


def test_piece_rule_example():
    c = get_tableau("rk4").c
    assert [piece_index(0, ci, 2, 2) for ci in c] == [0, 0, 0, 0]
    assert [piece_index(1, ci, 2, 2) for ci in c] == [1, 1, 1, 1]
    assert [(n + ci) * Fraction(1, 2) for n in (0, 1) for ci in c] == [
        0, Fraction(1, 4), Fraction(1, 4), Fraction(1, 2), Fraction(1, 2), Fraction(3, 4), Fraction(3, 4), 1]


def test_documented_overrides_work():
    assert load_spec("specs/ho-resnet58-euler.yaml", ["stages.0.integrator=rk4"]).stages[0].blocks == 7
    spec = load_spec("specs/pendulum-odenet.yaml", ["stages.0.steps=null", "stages.0.evaluations=8"])
    assert spec.stages[0].blocks == 2
    assert load_spec("specs/pendulum-odenet.yaml", ["stages[0].integrator=midpoint"]).stages[0].tableau.stages == 2
    assert load_spec("specs/pendulum-odenet.yaml", ["stages.0.name=G"]).stages[0].name == "G"  # a new key
    with pytest.raises(SpecError, match=r"stages\[0\]\.integrator: unknown tableau ''"):
        load_spec("specs/pendulum-odenet.yaml", ["stages.0.integrator="])
    with pytest.raises(SpecError, match=re.escape("--set: stages[3]: index 3 out of range (length 1)")):
        load_spec("specs/ho-resnet58-euler.yaml", ["stages.3.integrator=rk4"])


@pytest.mark.parametrize("shipped", ["ho-resnet58-rk4", "continuousnet-2-2-2", "pendulum-odenet"])
def test_doc_examples_are_the_shipped_networks(shipped):
    """The parameter counts the page quotes are those of specs/ (tested in test_compiler): same network."""
    doc = next(parse_spec(t) for t in SPECS if spec_id(t) == shipped)
    spec = load_spec(f"specs/{shipped}.yaml")
    same = {"exclude": {"seed": True, "stages": {"__all__": {"name"}}}}
    assert doc.model_dump(**same) == spec.model_dump(**same)


def test_widthless_layer_maps_to_the_stage_width():
    text = ("name: x\ninput: {features: 4}\nstages:\n  - module: {kind: layers, layers: "
            "[{kind: linear, features: 3}, tanh, linear]}\n    steps: 1\n")
    assert build(parse_spec(text))(torch.randn(2, 4)).shape == (2, 4)


def test_widthless_stem_layer_keeps_the_current_width():
    text = ("name: x\ninput: {features: 2}\nstem: {kind: layers, layers: [{kind: linear, features: 8}, tanh, linear]}"
            "\nstages:\n  - {features: 8, module: {kind: mlp, hidden: [4]}, steps: 1}\n")
    assert build(parse_spec(text))(torch.randn(2, 2)).shape == (2, 8)


def test_inline_heun_example():
    tableau = next(parse_spec(t) for t in SPECS if spec_id(t) == "inline-heun").stages[0].tableau
    assert (tableau.order, tableau.embedded_order) == (2, 1)
    assert tableau.b_error == (Fraction(-1, 2), Fraction(1, 2))


def test_extension_example_registers_a_kind_that_builds():
    from rkcompile.functions import FUNCTIONS

    code = next(text for lang, mark, text in BLOCKS if lang == "python" and mark == " extension")
    spec_text = next(text for lang, mark, text in BLOCKS if lang == "yaml" and mark == " extension")
    try:
        exec(compile(code, "docs/spec.md", "exec", dont_inherit=True), {"__name__": "docs_extension"})
        model = build(parse_spec(spec_text))
        f = sum(p.numel() for n, p in model.named_parameters() if n.startswith("stage0."))
        assert f == 8 * (16 * 16 * 25 + 16 + 16) == 51_456
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        with pytest.raises(SpecError, match="stages\\[0\\].module.kernel: the kernel must be odd"):
            parse_spec(spec_text.replace("kernel: 5", "kernel: 4"), file="example.yaml")
    finally:
        FUNCTIONS.unregister("gated")


@pytest.mark.parametrize(("weights", "scalars"), [("per-evaluation", 8), ("shared", 1),
                                                  ({"kind": "basis", "pieces": 3}, 3)])
def test_skip_init_is_one_scalar_per_f(weights, scalars):
    """docs/spec.md: skip_init is a learnable scalar per F (per evaluation, the shared F, or each piece)."""
    assert "a learnable scalar per F" in DOC
    model = build("specs/spirals-rk4.yaml", {"stages.0.step.skip_init": True, "stages.0.weights": weights,
                                             "stages.0.evaluations": 8}, device="meta")
    skips = [p for name, p in model.named_parameters() if name.endswith(".skip.scale")]
    assert len(skips) == scalars and all(p.numel() == 1 for p in skips)
