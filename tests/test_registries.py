"""The registries: generic behaviour, and every registered kind of every vocabulary built, checked and counted."""

from __future__ import annotations

import pytest
import torch
import yaml

from rkcompile import CompileError, SpecError, TableauError, build, parse_spec
from rkcompile.entries import ENTRIES
from rkcompile.functions import FUNCTIONS
from rkcompile.heads import HEADS
from rkcompile.integrators import FAMILIES
from rkcompile.layers import LAYERS
from rkcompile.multistep import _ORIGINS as MULTISTEP_ORIGINS
from rkcompile.multistep import MULTISTEP, LinearMultistep, get_multistep, list_multistep, register_multistep
from rkcompile.registry import Registry, RegistryError
from rkcompile.stems import STEMS
from rkcompile.tableau import Tableau
from rkcompile.tableaux import _REGISTRY as TABLEAUX
from rkcompile.tableaux import get_tableau, list_tableaux, register_tableau
from rkcompile.weights import WEIGHTS

IMAGE = {"channels": 4, "height": 6, "width": 6}
VECTOR = {"features": 4}
SIGNAL = {"channels": 4, "length": 6}
TOKENS = {"length": 6, "features": 4}
INPUTS = {"image": IMAGE, "vector": VECTOR, "signal": SIGNAL, "tokens": TOKENS}


def example(registry: Registry, name: str) -> dict:
    """A registered kind's example configuration (its `example` options, none when it needs none)."""
    return {"kind": name, **getattr(registry.get(name), "example", {})}


def spec_text(module: dict, image: bool | str, **stage) -> str:
    """A one-stage spec with this residual function (`image`: True, False for a vector, or a state name)."""
    stage = {"module": module, "evaluations": 4, "integrator": "euler", **stage}
    state = image if isinstance(image, str) else "image" if image else "vector"
    return yaml.safe_dump({"name": "t", "seed": 0, "input": INPUTS[state], "stages": [stage],
                           "output": {"classes": 3}})


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- the generic registry
def test_registry_quotes_the_bad_name_suggests_and_lists():
    r = Registry("colour")
    r.register("red", 1)
    r.register("green")(2)  # decorator form
    assert r.get("green") == 2 and r.names() == ["red", "green"] and "red" in r and len(r) == 2
    assert ["red"] not in r and {"red": 1} not in r  # unhashable values are no names, not a TypeError
    with pytest.raises(RegistryError) as info:
        r.get("gren")
    assert str(info.value) == "unknown colour 'gren' (did you mean 'green'?); expected one of red, green"
    assert [] not in r and {"a": 1} not in r  # unhashable names are unknown, not a TypeError
    with pytest.raises(RegistryError, match="a colour named 'red' is already registered"):
        r.register("red", 3)
    with pytest.raises(RegistryError, match="a colour name must be a non-empty string, found ''"):
        r.register("", 3)


# ---------------------------------------------------------------- residual functions
def _state(name: str) -> str:
    """The state a kind's example is built on: its first accepted state, else its `example_state`."""
    kind = FUNCTIONS.get(name)
    states = (kind.state,) if isinstance(kind.state, str) else kind.state or (kind.example_state,)
    return states[0]


def _input(spec) -> torch.Tensor:
    from rkcompile.analysis.propagate import meta_input

    return meta_input(spec, 2, torch.float64, device="cpu")


@pytest.mark.parametrize("name", FUNCTIONS.names())
@pytest.mark.parametrize("weights", ["per-evaluation", "shared", {"kind": "basis", "pieces": 2}],
                         ids=["per-evaluation", "shared", "basis"])
def test_every_function_kind_builds_with_parameters_identical_across_schemes(name, weights):
    if name == "interleaved":
        pytest.skip("an interleaved cycle needs per-evaluation weights and owns E / len(cycle) of each member: "
                    "tests/test_transformer.py counts it")
    image = _state(name)
    counts = {}
    for integrator in ("euler", "midpoint", "rk4"):
        model = build(parse_spec(spec_text(example(FUNCTIONS, name), image, integrator=integrator, weights=weights)))
        assert model.double()(_input(model.spec)).shape == (2, 3)
        counts[integrator] = parameters(model)
    assert len(set(counts.values())) == 1, counts
    # and the count is the F's size times the number of F the weight mode owns, plus the head
    shared = build(parse_spec(spec_text(example(FUNCTIONS, name), image, weights="shared")))
    f = parameters(shared.get_submodule("stage0.f"))
    head = parameters(shared.get_submodule("head"))
    owned = {"per-evaluation": 4, "shared": 1}.get(weights, 2) if isinstance(weights, str) else 2
    assert counts["euler"] == owned * f + head and f > 0


@pytest.mark.parametrize("name", FUNCTIONS.names())
def test_every_function_kind_on_the_wrong_state_is_a_located_error(name):
    state = FUNCTIONS.get(name).state
    if state is None:
        pytest.skip("this kind takes any state")
    wrong = next(s for s in INPUTS if s not in ((state,) if isinstance(state, str) else state))
    with pytest.raises(CompileError) as info:
        parse_spec(spec_text(example(FUNCTIONS, name), wrong), file="t.yaml")
    assert str(info.value).startswith("t.yaml:"), str(info.value)
    assert f"stages[0].module.kind: module '{name}' " in str(info.value)


def test_unknown_function_kind_lists_the_registry():
    with pytest.raises(SpecError) as info:
        parse_spec(spec_text({"kind": "mlpp", "hidden": [3]}, False), file="t.yaml")
    message = str(info.value)
    assert "stages[0].module.kind: unknown kind 'mlpp' (did you mean 'mlp'?); expected one of " in message
    assert message.endswith(", ".join(FUNCTIONS.names()))


# ---------------------------------------------------------------- layers, entries, stems, heads, weights
@pytest.mark.parametrize("name", LAYERS.names())
def test_every_layer_kind_builds_in_a_stem(name):
    image = name not in ("linear", "rmsnorm")  # every other layer kind takes images
    spec = parse_spec(yaml.safe_dump({"name": "t", "input": IMAGE if image else VECTOR,
                                     "stem": {"kind": "layers", "layers": [example(LAYERS, name)]},
                                     "stages": [{"module": {"kind": "layers", "layers": ["relu"]}, "steps": 1}]}))
    out = build(spec)(torch.randn(2, *((4, 6, 6) if image else (4,))))
    shape = spec.plan.output
    assert tuple(out.shape[1:]) == ((shape.width, shape.height, shape.breadth) if shape.image else (shape.width,))


@pytest.mark.parametrize("name", ENTRIES.names())
def test_every_entry_kind_builds_and_its_plan_is_the_real_shape(name):
    tokens = name == "project"  # the token entry; the others take images (and signals)
    module, width = ({"kind": "ffn"}, "features") if tokens else ("basic", "channels")
    spec = parse_spec(yaml.safe_dump({"name": "t", "input": TOKENS if tokens else IMAGE, "stages": [
        {"module": module, "steps": 1},
        {width: 4 if name == "none" else 8, "entry": example(ENTRIES, name), "module": module, "steps": 1}]}))
    out = build(spec)(_input(spec).float())
    shape = spec.plan.stages[1].shape
    expected = (shape.length, shape.width) if tokens else (shape.width, shape.height, shape.breadth)
    assert tuple(out.shape) == (2, *expected)


@pytest.mark.parametrize("name", STEMS.names())
def test_every_stem_kind_builds(name):
    stem = STEMS.get(name)
    spec = parse_spec(yaml.safe_dump({"name": "t", "input": getattr(stem, "example_input", IMAGE),
                                     "stem": example(STEMS, name),
                                     "stages": [{"module": {"kind": "layers", "layers": ["relu"]}, "steps": 1}],
                                     "output": {"classes": 3}}))
    assert build(spec)(_input(spec).float() if not spec.input.integer else _input(spec)).shape == (2, 3)


@pytest.mark.parametrize("name", HEADS.names())
def test_every_head_kind_builds(name):
    head = HEADS.get(name)
    spec = parse_spec(yaml.safe_dump({"name": "t", "input": getattr(head, "example_input", IMAGE),
                                     "stages": [{"module": {"kind": "layers", "layers": ["relu"]}, "steps": 1}],
                                     "output": example(HEADS, name)}))
    out = build(spec)(_input(spec).float())
    shape = spec.plan.output
    assert tuple(out.shape[1:]) == ((shape.length, shape.width) if shape.state == "tokens" else (shape.width,))


@pytest.mark.parametrize("name", WEIGHTS.names())
def test_every_weight_mode_owns_what_it_says(name):
    config = example(WEIGHTS, name)
    spec = parse_spec(spec_text({"kind": "mlp", "hidden": [3]}, False, weights=config, integrator="rk4",
                               evaluations=8))
    model = build(spec)
    targets = spec.stages[0].weights.functions(0, spec.stages[0].blocks, 4)
    for target in targets:
        model.get_submodule(target)  # every F it owns is in the model
    assert model(torch.randn(2, 4)).shape == (2, 3)


@pytest.mark.parametrize("registry", [FUNCTIONS, ENTRIES, STEMS, WEIGHTS, HEADS, LAYERS], ids=lambda r: r.what)
def test_the_schema_lists_every_registered_kind(registry):
    import json

    from rkcompile.spec import Spec

    schema = json.dumps(Spec.model_json_schema())
    for name in registry.names():
        assert f'"const": "{name}"' in schema or f'"{name}"' in schema, name


# ---------------------------------------------------------------- integrator families and tableaux
def test_register_multistep_builds_the_same_network_as_the_built_in_it_copies():
    from fractions import Fraction

    copy = LinearMultistep("test-ab2", (Fraction(1), Fraction(0)), (Fraction(3, 2), Fraction(-1, 2)),
                           startup="midpoint", source="Bashforth & Adams (1883)")
    try:
        assert register_multistep(copy) is copy
        assert get_multistep("TEST-AB2") is copy and list_multistep()[-1] == "test-ab2" and copy.order == 2
        torch.manual_seed(0)
        x = torch.randn(5, 4, dtype=torch.float64)
        out = {}
        for name in ("ab2", "test-ab2"):
            spec = parse_spec(spec_text({"kind": "mlp", "hidden": [3]}, False, integrator=name, evaluations=6))
            assert spec.stages[0].blocks == 5  # one midpoint start-up step (2 evaluations), then 4 AB2 steps
            out[name] = build(spec).double()(x)
        assert torch.equal(out["ab2"], out["test-ab2"])  # same seed, same coefficients, same start-up: same network
    finally:
        MULTISTEP.pop("test-ab2"), MULTISTEP_ORIGINS.pop("test-ab2")
    with pytest.raises(SpecError, match="test-ab2"):
        parse_spec(spec_text({"kind": "mlp", "hidden": [3]}, False, integrator="test-ab2"))


def test_one_name_is_one_integrator_across_tableaux_and_multistep_methods():
    from fractions import Fraction

    one = (Fraction(1),)
    with pytest.raises(TableauError, match="an integrator named 'rk4' is already registered \\(a tableau, built in\\)"):
        register_multistep(LinearMultistep("RK4", one, one))
    with pytest.raises(TableauError, match="an integrator named 'ab3' is already registered \\(built in\\)"):
        register_multistep(LinearMultistep("ab3", one, one))
    with pytest.raises(TableauError, match="an integrator named 'momentum' is already registered "
                                           "\\(a multistep method, built in\\)"):
        register_tableau(Tableau.from_text("momentum", ["0"], [[]], ["1"]))
    with pytest.raises(TableauError, match="register_multistep expects a LinearMultistep, found Tableau"):
        register_multistep(get_tableau("rk4"))
    assert "rk4" not in MULTISTEP and "momentum" not in TABLEAUX


def test_the_rk_family_resolves_names_and_inline_tableaux():
    assert FAMILIES.names()[0] == "rk"
    spec = parse_spec(spec_text({"kind": "mlp", "hidden": [3]}, False, integrator="rk4"))
    assert spec.stages[0].tableau is get_tableau("rk4").pruned() or spec.stages[0].tableau == get_tableau("rk4")
    assert spec.stages[0].family is FAMILIES.get("rk")


def test_register_tableau_happy_path_builds_and_checks():
    name = "test-heun-like"
    tableau = Tableau.from_text(name, ["0", "2/3"], [[], ["2/3"]], ["1/4", "3/4"], source="Ralston (1962)")
    try:
        assert register_tableau(tableau) is tableau
        assert get_tableau(name.upper()) is tableau and name in list_tableaux()
        assert tableau.order == 2
        spec = parse_spec(spec_text({"kind": "mlp", "hidden": [3]}, False, integrator=name, evaluations=6))
        assert spec.stages[0].blocks == 3 and spec.stages[0].tableau.name == name
        assert build(spec)(torch.randn(2, 4)).shape == (2, 3)
    finally:
        TABLEAUX.pop(name)
    with pytest.raises(SpecError, match="unknown tableau 'test-heun-like'"):
        parse_spec(spec_text({"kind": "mlp", "hidden": [3]}, False, integrator=name))
