"""The one shape pass: "ok" means the network builds and runs, and validation is complete however a Spec is made."""

from __future__ import annotations

import pydantic
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rkcompile import CompileError, RkcompileError, Spec, SpecError, build, load_spec, parse_spec
from rkcompile.compiler import compile_spec

small = st.integers(1, 4)
kernel = st.integers(1, 4)
stride = st.integers(1, 3)
acts = st.sampled_from(["relu", "tanh", "none"])


def conv_layer():
    return st.fixed_dictionaries({"kind": st.just("conv")}, optional={
        "channels": small, "kernel": kernel, "stride": stride, "groups": st.integers(1, 2)})


def layer():
    return st.one_of(conv_layer(), st.sampled_from(["relu", "batchnorm", "layernorm", "linear", "maxpool"]),
                     st.fixed_dictionaries({"kind": st.just("groupnorm"), "groups": st.integers(1, 3)}),
                     st.fixed_dictionaries({"kind": st.sampled_from(["maxpool", "avgpool"]), "kernel": kernel,
                                            "stride": stride}))


module = st.one_of(
    st.fixed_dictionaries({"kind": st.just("basic")}, optional={"kernel": kernel, "form": st.sampled_from(["pre", "post"])}),
    st.fixed_dictionaries({"kind": st.just("bottleneck")}, optional={"expansion": st.integers(1, 3), "width": small}),
    st.fixed_dictionaries({"kind": st.just("mlp"), "hidden": st.lists(small, min_size=1, max_size=2)}),
    st.fixed_dictionaries({"kind": st.just("layers"), "layers": st.lists(layer(), min_size=1, max_size=3)}),
)
entry = st.one_of(st.just("none"), st.fixed_dictionaries({"kind": st.sampled_from(["transition", "stitch"])},
                                                          optional={"stride": stride}),
                  st.fixed_dictionaries({"kind": st.just("transition"), "shortcut": st.sampled_from(["conv", "zero-pad"])}))
step = st.one_of(st.just({}), st.just({"learn": "scalar"}), st.just({"h": "1/2"}),
                 st.fixed_dictionaries({"learn": st.just("channel"), "controller": st.sampled_from(["fc", "lstm"])}))
stage = st.fixed_dictionaries(
    {"module": module, "steps": st.integers(1, 2), "integrator": st.sampled_from(["euler", "midpoint", "rk4"])},
    optional={"channels": st.integers(1, 6), "features": st.integers(1, 6), "entry": entry, "step": step,
              "weights": st.sampled_from(["per-evaluation", "shared", {"kind": "basis", "pieces": 2}])})
spec_data = st.fixed_dictionaries(
    {"name": st.just("p"), "seed": st.just(0),
     "input": st.one_of(st.fixed_dictionaries({"channels": small, "height": st.integers(1, 7), "width": st.integers(1, 7)}),
                        st.fixed_dictionaries({"features": small})),
     "stages": st.lists(stage, min_size=1, max_size=2)},
    optional={"stem": st.one_of(
        st.fixed_dictionaries({"kind": st.just("conv"), "channels": small, "kernel": kernel, "stride": stride},
                              optional={"pool": st.fixed_dictionaries({"kind": st.just("maxpool"), "kernel": kernel,
                                                                       "stride": stride})}),
        st.fixed_dictionaries({"kind": st.just("layers"), "layers": st.lists(layer(), min_size=1, max_size=3)})),
        "output": st.fixed_dictionaries({"classes": small})})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_data)
def test_every_spec_that_checks_builds_and_runs_on_the_meta_device(data):
    try:
        spec = parse_spec(yaml.safe_dump(data), file="p.yaml")
    except RkcompileError as e:
        assert isinstance(e, SpecError) and "\n" not in str(e) and str(e).startswith("p.yaml:"), str(e)
        return
    with torch.device("meta"):
        model = compile_spec(spec)
        i = spec.input
        x = torch.empty(2, *((i.channels, i.height, i.width) if i.is_image else (i.features,)))
    out = model(x)
    shape = spec.plan.output
    assert tuple(out.shape) == (2, *((shape.width, shape.height, shape.breadth) if shape.image else (shape.width,)))


SHIPPED = ["spirals-rk4", "pendulum-odenet", "continuousnet-2-2-2", "resnet14-cifar10", "ho-resnet58-rk4"]
MUTATIONS = st.one_of(
    st.tuples(st.just("stages.0.module.kernel"), st.integers(1, 6)),
    st.tuples(st.just("stages.0.channels"), st.integers(1, 20)),
    st.tuples(st.just("stages.0.features"), st.integers(1, 20)),
    st.tuples(st.just("stages.0.entry"), st.sampled_from(["none", "transition", "stitch"])),
    st.tuples(st.just("stages.-1.entry"), st.fixed_dictionaries({"kind": st.just("transition"), "stride": stride})),
    st.tuples(st.just("stem.kernel"), st.integers(1, 6)),
    st.tuples(st.just("stem.stride"), st.integers(1, 4)),
    st.tuples(st.just("input.height"), st.integers(1, 9)),
    st.tuples(st.just("stages.0.integrator"), st.sampled_from(["euler", "rk4", "verner89", "bs3"])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SHIPPED), st.lists(MUTATIONS, min_size=1, max_size=3))
def test_every_mutated_shipped_spec_that_checks_runs_on_the_meta_device(name, mutations):
    try:
        spec = load_spec(f"specs/{name}.yaml", dict(mutations))
    except RkcompileError as e:
        assert isinstance(e, SpecError) and "\n" not in str(e), str(e)
        return
    with torch.device("meta"):
        model = compile_spec(spec)
        i = spec.input
        out = model(torch.empty(2, *((i.channels, i.height, i.width) if i.is_image else (i.features,))))
    shape = spec.plan.output
    assert tuple(out.shape) == (2, *((shape.width, shape.height, shape.breadth) if shape.image else (shape.width,)))


def one_stage(**stage) -> dict:
    return {"name": "t", "input": {"channels": 4, "height": 8, "width": 8},
            "stages": [{"module": "basic", "evaluations": 4, "integrator": "rk4", **stage}]}


def error(data: dict) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(yaml.safe_dump(data), file="t.yaml")
    return str(info.value)


def test_basic_with_an_even_kernel_is_a_located_error():
    message = error(one_stage(module={"kind": "basic", "kernel": 4}))
    assert message.startswith("t.yaml:"), message
    assert ("stages[0].module: kernel 4 is even: padding kernel // 2 keeps the resolution only for odd kernels; "
            "use 3 or 5") in message


def test_a_layers_conv_with_an_even_kernel_is_planned_with_its_real_shape():
    message = error(one_stage(module={"kind": "layers", "layers": [{"kind": "conv", "kernel": 2}]}))
    assert "stages[0].module: module 'layers' maps the state 4x8x8 to 4x9x9; a residual function must return 4x8x8" \
        in message
    stem = dict(one_stage(), stem={"kind": "conv", "channels": 4, "kernel": 2})  # a stem may change the resolution
    spec = parse_spec(yaml.safe_dump(stem))
    assert spec.plan.stem.shape.height == 9
    assert build(spec)(torch.randn(2, 4, 8, 8)).shape == (2, 4, 9, 9)


def test_an_entry_whose_residual_function_cannot_take_the_stride_is_a_located_error():
    data = one_stage(module={"kind": "layers", "layers": ["batchnorm", "relu"]}, channels=4,
                     entry={"kind": "transition", "stride": 2})
    assert ("stages[0].module: module 'layers' with stride 2 maps the state 4x8x8 to 4x8x8; a residual function "
            "must return 4x4x4") in error(data)


def test_lstm_controller_with_channel_steps_builds_and_runs():
    model = build(parse_spec(yaml.safe_dump(one_stage(step={"learn": "channel", "controller": "lstm"}, evaluations=8))))
    assert model(torch.randn(2, 4, 8, 8)).shape == (2, 4, 8, 8)
    assert "stage0_block1_controller" in model.code


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("channels", True, "stages[0].channels: input should be a valid integer, found True"),
    ("steps", "4", "stages[0].steps: input should be a valid integer, found '4'"),
    ("evaluations", 4.0, "stages[0].evaluations: input should be a valid integer, found 4.0"),
])
def test_integer_fields_are_strict(field, value, expected):
    data = one_stage(**{field: value})
    if field == "steps":
        del data["stages"][0]["evaluations"]
    assert expected in error(data)


@pytest.mark.parametrize(("seed", "expected"), [
    (True, "seed: input should be a valid integer, found True"),
    (-1, "seed: must be at least 0, found -1"),
    (2**63, f"seed: must be at most {2**63 - 1}, found {2**63}"),
])
def test_seed_is_strict_and_bounded(seed, expected):
    assert expected in error(dict(one_stage(), seed=seed))
    parse_spec(yaml.safe_dump(dict(one_stage(), seed=2**63 - 1)))


def test_model_validate_runs_the_semantic_checks():
    with pytest.raises(pydantic.ValidationError, match="a budget of 10 evaluations does not divide into blocks of 4"):
        Spec.model_validate(one_stage(evaluations=10))
    wider = one_stage()
    wider["stages"].append({"module": "basic", "steps": 1, "channels": 8})
    with pytest.raises(pydantic.ValidationError, match="width 8 differs from the incoming 4"):
        Spec.model_validate(wider)
    with pytest.raises(CompileError) as info:
        parse_spec(yaml.safe_dump(wider), file="w.yaml")
    assert "w.yaml:" in str(info.value) and "stages[1].channels: width 8 differs" in str(info.value)


def test_the_integrator_is_resolved_once_at_validation():
    inline = {"name": "mine", "c": [0, "1/2"], "A": [[], ["1/2"]], "b": [0, 1]}
    spec = Spec.model_validate(one_stage(integrator=inline, evaluations=4))
    method = spec.stages[0].tableau
    assert method is spec.stages[0].tableau and method.name == "mine" and method.order == 2
    assert spec.stages[0].blocks == 2
    assert spec.stages[0].integrator.c[1].text == "1/2" and spec.stages[0].integrator.c[1].value == 0.5


def test_compile_spec_is_pure():
    spec = parse_spec(yaml.safe_dump(dict(one_stage(), seed=3)))
    state = torch.random.get_rng_state()
    a, b = compile_spec(spec), compile_spec(spec)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(CompileError, match="compile_spec expects a validated Spec, found str"):
        compile_spec("specs/spirals-rk4.yaml")


def test_a_validated_spec_dumps_what_was_set_and_validates_again():
    spec = Spec.model_validate(one_stage(step={"learn": "channel", "controller": "fc"}, entry="none"))
    again = Spec.model_validate(spec.data)
    assert again.plan == spec.plan and again.data == spec.data
    assert "reduction" not in spec.data["stages"][0]["step"] and spec.data["stages"][0]["entry"] == {"kind": "none"}
