"""Time-conditioned F (`time: concat | film`): F(y, t) at the evaluation's time, for every weight mode and family.

References are written here by hand: F with t appended or FiLM-modulated, inside plain-Python RK and
Adams–Bashforth steps; parameter counts by hand from the layer sizes. Numerics in float64.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from click.testing import CliRunner

import rkcompile
from rkcompile import SpecError, analyze, build, parse_spec, project, refine, remanifest
from rkcompile.artifact import load, save
from rkcompile.cli import cli
from rkcompile.conditioning import TIMES
from rkcompile.export import export
from rkcompile.functions import FUNCTIONS
from rkcompile.graphmeta import get
from rkcompile.multistep import list_multistep
from rkcompile.regional import RegionalModule
from rkcompile.render import to_dot
from rkcompile.render.structure import read_blocks
from rkcompile.tableaux import get_tableau, list_tableaux
from rkcompile.time_modules import Film, concat_time

SCHEMES = [*list_tableaux(), *list_multistep()]
WEIGHTS = {"per-evaluation": "per-evaluation", "shared": "shared", "constant": {"kind": "basis", "pieces": 3},
           "linear": {"kind": "basis", "functions": "linear", "pieces": 3},
           "legendre": {"kind": "basis", "functions": "legendre", "degree": 2}}
SIZE = {"per-evaluation": None, "shared": 1, "constant": 3, "linear": 3, "legendre": 3}
HIDDEN = 3  # the film map's hidden width in these tests


def stage_spec(time, weights="shared", integrator="rk4", steps=3, module=None, state=None, **stage) -> str:
    """One stage on [0, 1] of y' = F(y, t), F an MLP 3 → 6 → 3 (tanh) unless `module` says otherwise."""
    stage = {"module": module or {"kind": "mlp", "hidden": [6], "act": "tanh"}, "integrator": integrator,
             "steps": steps, "weights": weights, "time": time, "step": {"T": 1}, **stage}
    return yaml.safe_dump({"name": "tcond", "seed": 0, "input": state or {"features": 3}, "stages": [stage]},
                          sort_keys=False)


def randomized(model, seed: int = 3):
    """Every parameter drawn at random (a film map's last layer starts at zero), in float64."""
    model = model.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return model.eval()


def inputs(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


# ---------------------------------------------------------------- hand-written F(y, t)
def hand_f(p, time: str, y: torch.Tensor, t: float) -> torch.Tensor:
    """The MLP 3 → 6 → 3 with t appended to each linear's input (concat) or FiLM after the hidden linear."""
    def tcol(z):
        return torch.full((z.shape[0], 1), t, dtype=z.dtype)

    if time == "concat":
        z = torch.tanh(torch.cat([y, tcol(y)], 1) @ p("fc1.weight").T + p("fc1.bias"))
        return torch.cat([z, tcol(z)], 1) @ p("fc2.weight").T + p("fc2.bias")
    z = y @ p("fc1.weight").T + p("fc1.bias")
    m = torch.tanh(p("film1.weight1")[:, 0] * t + p("film1.bias1"))
    gb = p("film1.weight2") @ m + p("film1.bias2")
    z = torch.tanh(z * (1 + gb[:6]) + gb[6:])
    return z @ p("fc2.weight").T + p("fc2.bias")


def shared_weights(model):
    return lambda name: model.get_parameter(f"stage0.f.{name}")


def rk_reference(f, y, name: str, steps: int, T: float = 1.0) -> torch.Tensor:
    """A plain-Python explicit RK integration of y' = f(y, t) on [0, T]."""
    tab = get_tableau(name).pruned()
    h = T / steps
    for n in range(steps):
        ks = []
        for i in range(tab.stages):
            z = y + h * sum(float(tab.A[i][j]) * ks[j] for j in range(i))
            ks.append(f(z, (n + float(tab.c[i])) * h))
        y = y + h * sum(float(b) * k for b, k in zip(tab.b, ks))
    return y


@pytest.mark.parametrize("time", ["concat", {"kind": "film", "hidden": HIDDEN}], ids=["concat", "film"])
@pytest.mark.parametrize("integrator", ["rk4", "dopri5", "heun3", "verner89"])
def test_a_compiled_shared_step_equals_a_plain_rk_step_given_t_by_hand(time, integrator):
    m = randomized(build(parse_spec(stage_spec(time, integrator=integrator))))
    kind = time if isinstance(time, str) else time["kind"]
    y = inputs(5, 3)
    ref = rk_reference(lambda z, t: hand_f(shared_weights(m), kind, z, t), y, integrator, 3)
    assert (m(y) - ref).abs().max().item() <= 1e-10


@pytest.mark.parametrize("time", ["concat", "film"])
def test_adams_bashforth_f_sees_t_n(time):
    """ab3: two kutta3 start-up steps, then y += h (23 f_n − 16 f_{n−1} + 5 f_{n−2}) / 12 with f_n = F(y_n, t_n)."""
    m = randomized(build(parse_spec(stage_spec(time if time == "concat" else {"kind": "film", "hidden": HIDDEN},
                                               integrator="ab3", steps=5))))
    f = lambda z, t: hand_f(shared_weights(m), time, z, t)  # noqa: E731
    y, h, fs = inputs(4, 3), 1 / 5, []
    for n in range(5):
        fs.append(f(y, n * h))
        y = rk_reference(lambda z, t, n=n: f(z, n * h + t), y, "kutta3", 1, h) if n < 2 else \
            y + h * (23 * fs[-1] - 16 * fs[-2] + 5 * fs[-3]) / 12
    assert (m(inputs(4, 3)) - y).abs().max().item() <= 1e-10


def hat(k: int, s: float, nodes: int) -> float:
    return max(0.0, 1 - abs(s * (nodes - 1) - k))


@pytest.mark.parametrize("time", ["concat", "film"])
def test_a_linear_basis_step_combines_weights_and_gives_t(time):
    spec = stage_spec(time if time == "concat" else {"kind": "film", "hidden": HIDDEN}, WEIGHTS["linear"], steps=4)
    m = randomized(build(parse_spec(spec)))

    def f(z, t):
        phi = [hat(k, t, 3) for k in range(3)]
        return hand_f(lambda name: sum(w * m.get_parameter(f"stage0.piece{p}.{name}") for p, w in enumerate(phi)),
                      time, z, t)

    y = inputs(5, 3)
    assert (m(y) - rk_reference(f, y, "rk4", 4)).abs().max().item() <= 1e-10


def test_concat_gives_every_conv_one_channel_of_t():
    """Images: torchdiffeq's ConcatConv2d, [y, t] → conv, for each conv of F (here conv-tanh-conv, 2 channels)."""
    module = {"kind": "layers", "layers": [{"kind": "conv", "bias": True}, "tanh", {"kind": "conv", "bias": True}]}
    spec = stage_spec("concat", integrator="midpoint", steps=2, module=module,
                      state={"channels": 2, "height": 5, "width": 5}, channels=2)
    m = randomized(build(parse_spec(spec)))
    w = shared_weights(m)
    assert w("conv1.weight").shape == (2, 3, 3, 3) and w("conv2.weight").shape == (2, 3, 3, 3)

    def f(z, t):
        def cat(a):
            return torch.cat([a, torch.full_like(a[:, :1], t)], 1)
        z = torch.tanh(F.conv2d(cat(z), w("conv1.weight"), w("conv1.bias"), padding=1))
        return F.conv2d(cat(z), w("conv2.weight"), w("conv2.bias"), padding=1)

    y = inputs(2, 2, 5, 5)
    assert (m(y) - rk_reference(f, y, "midpoint", 2)).abs().max().item() <= 1e-10


def test_time_layers_alone():
    x = inputs(2, 3, 4)
    assert torch.equal(concat_time(x, 0.25, 1)[:, 3], torch.full((2, 4), 0.25, dtype=torch.float64))
    assert torch.equal(concat_time(x, 0.25, -1)[..., :4], x) and concat_time(x, 0.25, -1).shape == (2, 3, 5)
    film = Film(3, 4, "tanh", 1).double()
    assert torch.equal(film(x, 0.7), x)  # the map's last layer starts at zero: the identity
    with torch.no_grad():
        film.bias2.copy_(torch.tensor([1.0, 0, 0, 0.5, 0, 0], dtype=torch.float64))
    out = film(x, 0.7)
    assert torch.equal(out[:, 0], 2 * x[:, 0] + 0.5) and torch.equal(out[:, 1], x[:, 1]) and torch.equal(out[:, 2], x[:, 2])


# ---------------------------------------------------------------- parameters: the weight mode alone
def f_parameters(time: str) -> int:
    """|F| by hand for the MLP 3 → 6 → 3: concat widens each linear's input by one; film adds one map for width 6."""
    if time == "concat":
        return (3 + 1) * 6 + 6 + (6 + 1) * 3 + 3
    return 3 * 6 + 6 + 6 * 3 + 3 + (HIDDEN + HIDDEN + 2 * 6 * HIDDEN + 2 * 6)


@pytest.mark.parametrize("mode", list(WEIGHTS))
@pytest.mark.parametrize("time", ["concat", "film"])
def test_parameters_depend_on_the_weight_mode_only(time, mode):
    t = time if time == "concat" else {"kind": "film", "hidden": HIDDEN}
    for scheme in SCHEMES:
        spec = parse_spec(stage_spec(t, WEIGHTS[mode], scheme, steps=4))
        model = build(spec, device="meta")
        stage = spec.stages[0]
        owned = sum(p.numel() for target in stage.weights.functions(0, stage.blocks, 1)
                    for p in model.get_submodule(target).parameters()) if mode != "per-evaluation" else \
            sum(p.numel() for n, p in model.named_parameters() if ".eval" in n)
        size = SIZE[mode] or stage.total_evaluations
        assert owned == size * f_parameters(time), (scheme, mode)
        others = sum(p.numel() for p in model.parameters()) - owned  # only a method's own coefficients (LM-ResNet's k_n)
        assert others == sum(p.numel() for n, p in model.named_parameters() if ".eval" not in n and ".f." not in n
                             and ".piece" not in n), scheme


# ---------------------------------------------------------------- what F sees is what is drawn
@pytest.mark.parametrize("integrator", ["rk4", "dopri5", "ab3", "momentum", "second-order"])
@pytest.mark.parametrize("time", ["concat", "film"])
def test_the_time_each_layer_reads_is_the_drawn_time(time, integrator):
    m = build(parse_spec(stage_spec(time, integrator=integrator, steps=4)))
    drawn = {(v.label, e.index): e.time for v in read_blocks(m) if v.kind == "step" for e in v.evaluations}
    timed = [n for n in m.graph.nodes if len(n.args) > 1 and (n.target is concat_time or "film" in str(n.target))]
    assert len(timed) == len(drawn) * (2 if time == "concat" else 1)  # two linears read t, or one film
    tableau = m.spec.stages[0].tableau
    for node in timed:
        meta = get(node)
        c = tableau.block_c(meta.block)[meta.evaluation - 1] if hasattr(tableau, "block_c") else \
            tableau.c[meta.evaluation - 1]
        assert node.args[1] == float(drawn[(meta.unit, meta.evaluation)]) == float((meta.block + c) * Fraction(1, 4))
    dot = to_dot(m, level="block")
    assert "t = t<SUB>0</SUB> = 0" in dot or "t<SUB>0</SUB>" in dot


# ---------------------------------------------------------------- tokens: every linear, every pre-norm
@pytest.mark.parametrize("time", ["concat", "film"])
def test_transformer_kinds_read_t_in_their_linears_or_after_their_norms(time):
    spec = parse_spec(yaml.safe_dump({"name": "tok", "seed": 0, "input": {"length": 5, "features": 8}, "stages": [
        {"module": [{"kind": "attention", "heads": 2}, {"kind": "ffn", "ratio": 2}], "integrator": "midpoint",
         "evaluations": 4, "time": time}]}))
    m = build(spec)
    f = m.get_submodule("stage0.block0.eval1")
    if time == "concat":
        assert f.qkv.in_features == 9 and f.proj.in_features == 9
        assert m.get_submodule("stage0.block0.eval2").fc2.in_features == 17
    else:
        assert [c.name for c in f.calls][:3] == ["ln", "film1", "qkv"]
    out = m(torch.randn(2, 5, 8))
    assert out.shape == (2, 5, 8) and torch.isfinite(out).all()


# ---------------------------------------------------------------- transformations, artifacts, analysis, export
@pytest.mark.parametrize("time", ["concat", "film"])
def test_remanifest_converges_at_rk4s_order(time):
    """F depends on t; sampling it at the wrong times would cap the order at 1."""
    t = time if time == "concat" else {"kind": "film", "hidden": HIDDEN}
    m = randomized(build(parse_spec(stage_spec(t, steps=2))), seed=5)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(0.6)
    y = inputs(6, 3)
    exact = remanifest(m, integrator="rk4", steps=256)(y)
    errors = [(remanifest(m, integrator="rk4", steps=n)(y) - exact).abs().max().item() for n in (4, 8, 16)]
    slopes = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(slopes) >= 3.5, (errors, slopes)
    assert remanifest(m, integrator="ab3", steps=8).spec.stages[0].time.kind == time


def test_refine_and_project_keep_a_film_linear_basis():
    m = randomized(build(parse_spec(stage_spec({"kind": "film", "hidden": HIDDEN}, WEIGHTS["linear"], steps=4))))
    y = inputs(5, 3)
    assert (refine(m, steps=False)(y) - m(y)).abs().max().item() <= 1e-12
    richer = project(m, functions="linear", pieces=5)  # 3 nodes at 0, 1/2, 1 lie among 5: exact
    assert (richer(y) - m(y)).abs().max().item() <= 1e-12 and richer.spec.stages[0].time.kind == "film"


@pytest.mark.parametrize("time", ["concat", "film"])
def test_save_and_load_round_trip(time, tmp_path):
    m = randomized(build(parse_spec(stage_spec(time, WEIGHTS["legendre"])))).float()
    save(m, tmp_path / "m.pt")
    back = load(tmp_path / "m.pt")
    x = torch.randn(4, 3)
    assert torch.equal(back(x), m(x)) and back.spec.stages[0].time.kind == time


def test_analysis_counts_the_time_layers_and_measures_them():
    spec = stage_spec({"kind": "film", "hidden": HIDDEN}, integrator="midpoint", steps=2,
                      module={"kind": "layers", "layers": ["conv", "batchnorm", "relu", "conv", "batchnorm"]},
                      state={"channels": 4, "height": 6, "width": 6}, channels=4)
    plain = analyze(build(parse_spec(spec.replace("kind: film", "kind: none").replace("hidden: 3", ""))), batch=2)
    report = analyze(build(parse_spec(spec)), batch=2, measure=True)
    film = 2 * (HIDDEN + HIDDEN + 2 * 4 * HIDDEN + 2 * 4)  # a map after each of the two norms
    assert report.total.parameters == plain.total.parameters + film
    act, calls = 2 * 4 * 6 * 6 * 4, 2 * 2 * 2  # one activation in bytes (float32); 2 films x 2 evaluations x 2 steps
    extra = report.total.saved_bytes - plain.total.saved_bytes  # each film saves its input for the scale's gradient
    assert calls * act <= extra <= calls * (act + 64), extra  # and (1 + gamma), a few bytes
    for row in report.units:
        assert row.measured_saved_bytes == pytest.approx(row.saved_bytes, rel=0.05, abs=64), row.label
    concat = analyze(build(parse_spec(spec.replace("{kind: film, hidden: 3}", "concat"))), batch=2)
    assert concat.total.flops > plain.total.flops  # each conv reads one more channel


@pytest.mark.parametrize("time", ["concat", "film"])
def test_torch_export_and_onnx_equal_eager(time, tmp_path):
    import onnxruntime as ort

    m = randomized(build(parse_spec(stage_spec(time, WEIGHTS["linear"])))).float()
    x = torch.randn(5, 3)
    with torch.no_grad():
        eager = m(x)
    program = torch.export.load(export(m, tmp_path / "m.pt2"))
    with torch.no_grad():
        assert (program.module()(x) - eager).abs().max().item() <= 1e-5
    export(m, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert np.abs(out - eager.numpy()).max() <= 1e-5


def test_regional_compilation_matches_and_gives_each_block_its_region():
    """Each block's times are constants of its code, so the blocks of a time-conditioned stage do not share one."""
    m = randomized(build(parse_spec(stage_spec("concat", steps=3))))
    y = inputs(4, 3)
    regional = RegionalModule(m)
    assert torch.equal(regional(y), m(y))
    assert len(regional.block_classes) == 3
    plain = RegionalModule(build(parse_spec(stage_spec("none", steps=3))))
    assert len(plain.block_classes) == 1
    compiled = rkcompile.compile(m, backend="eager")
    assert torch.equal(compiled(y), m(y))


# ---------------------------------------------------------------- bad input
BAD = [
    ({"time": "film", "integrator": "euler", "module": {"kind": "layers", "layers": ["linear"]}},
     "stages[0].time: time: film modulates F's norm layers, or its hidden conv/linear layers when it has no norms, "
     "and this F has neither; use 'time: concat'"),
    ({"time": "concat", "module": {"kind": "layers", "layers": ["tanh"]}},
     "stages[0].time: time: concat appends t to the input of F's conv and linear layers, and this F has none; use "
     "'time: film'"),
    ({"time": "concat", "weights": "per-evaluation", "step": {"learn": "scalar"}},
     "stages[0].time: time: concat gives F the nominal time t_n + c_i h, which learned step sizes would change; use "
     "'learn: none' (or 'time: none')"),
    ({"time": "concatt"}, "stages[0].time: unknown kind 'concatt' (did you mean 'concat'?); expected one of "
                          "none, concat, film"),
    ({"time": {"kind": "film", "hidden": 0}}, "stages[0].time.hidden: must be at least 1, found 0"),
]


@pytest.mark.parametrize("stage, message", BAD, ids=[m.split(": ")[1] for _, m in BAD])
def test_bad_time_inputs_are_located_errors(stage, message, tmp_path):
    text = stage_spec(**{"time": "none", **stage})
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="t.yaml")
    assert message in str(info.value)
    path = tmp_path / "t.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output and message in result.output
    line = int(result.output.split(f"{path}:")[1].split(":")[0])
    assert text.splitlines()[line - 1].lstrip().startswith(("time:", "hidden:")), (line, text)


def test_grouped_convs_and_user_modules_are_refused():
    module = {"kind": "layers", "layers": [{"kind": "conv", "groups": 2}, "relu"]}
    with pytest.raises(SpecError, match=r"stages\[0\]\.time: time: concat adds t as one input channel, which a grouped "
                       r"conv \(conv1, groups 2\) cannot split evenly; use 'time: film'"):
        parse_spec(stage_spec("concat", module=module, state={"channels": 4, "height": 4, "width": 4}, channels=4))
    rkcompile.register_module("twice", lambda width: torch.nn.Linear(width, width))
    try:
        with pytest.raises(SpecError, match=r"stages\[0\]\.time: time: film gives t to F's own layers, but user module "
                           r"'twice' runs its own forward, which cannot receive t; use 'time: none'"):
            parse_spec(stage_spec("film", module={"kind": "twice"}))
    finally:
        FUNCTIONS.unregister("twice")


def test_the_schema_lists_every_time_kind():
    import json

    from rkcompile.spec import Spec

    schema = json.dumps(Spec.model_json_schema())
    for name in TIMES.names():
        assert f'"const": "{name}"' in schema, name
