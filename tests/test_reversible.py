"""Reversible backprop (`backprop: reversible`): gradients equal ordinary backprop, memory does not grow with depth."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from rkcompile import build, load, parse_spec, save
from rkcompile.analysis import analyze
from rkcompile.cli import cli
from rkcompile.errors import RkcompileError, SpecError
from rkcompile.planner import plan

IMAGES = """
name: rev-images
seed: 0
input: {channels: 3, height: 8, width: 8}
stem: {kind: conv, channels: 8, kernel: 3, act: none}
stages:
  - channels: 8
    module: {kind: basic, form: post, after: none}
    integrator: momentum
    evaluations: 6
    backprop: reversible
output: {classes: 10}
"""

VECTORS = """
name: rev-vectors
seed: 1
input: {features: 5}
stages:
  - features: 5
    module: {kind: mlp, hidden: [7], act: tanh}
    integrator: momentum
    evaluations: 6
    step: {h: "1/2"}
    backprop: reversible
output: {classes: 3}
"""

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


INTEGRATORS = ["momentum", "leapfrog", "second-order", {"method": "momentum", "gamma": "1/2", "learn": True},
               {"alpha": [0, 1], "beta": [2, 0], "startup": "heun", "name": "inline-leapfrog"}]


def pair(text: str, overrides: dict):
    """The same network with reversible and with ordinary backprop, same weights, in float64."""
    rev = build(parse_spec(text, overrides))
    plain = build(parse_spec(text, {**overrides, "stages.0.backprop": "saved"}))
    plain.load_state_dict(rev.state_dict())
    return rev.double(), plain.double()


def gradients(model, x: torch.Tensor):
    """Output, input gradient and parameter gradients of a fixed scalar loss."""
    x = x.clone().requires_grad_()
    model.zero_grad()
    out = model(x)
    (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sin().sum().backward()
    return out.detach(), x.grad, {name: p.grad.clone() for name, p in model.named_parameters()}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


@pytest.mark.parametrize("integrator", INTEGRATORS, ids=lambda i: i if isinstance(i, str) else i.get("name", i.get("method")))
@pytest.mark.parametrize("text", [IMAGES, VECTORS], ids=["images-batchnorm", "vectors"])
def test_gradients_equal_ordinary_backprop(text, integrator):
    rev, plain = pair(text, {"stages.0.integrator": integrator})
    rev.train(), plain.train()
    x = torch.randn(4, *((3, 8, 8) if "images" in text else (5,)), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(3))
    out_r, dx_r, grads_r = gradients(rev, x)
    out_p, dx_p, grads_p = gradients(plain, x)
    assert torch.equal(out_r, out_p)  # the forward pass is the same graph, run without autograd
    assert relative(dx_r, dx_p) <= 1e-8
    assert grads_r.keys() == grads_p.keys()
    for name in grads_p:
        assert relative(grads_r[name], grads_p[name]) <= 1e-8, name
    # batch-norm running statistics moved once, as ordinary backprop moves them (backward's re-evaluation restores)
    for (name, b_r), b_p in zip(rev.named_buffers(), plain.buffers(), strict=True):
        assert torch.equal(b_r, b_p), name


def test_shared_and_basis_weights():
    for weights in ("shared", {"kind": "basis", "pieces": 2}):
        rev, plain = pair(VECTORS, {"stages.0.weights": weights, "stages.0.integrator": "leapfrog"})
        x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        out_r, dx_r, grads_r = gradients(rev, x)
        out_p, dx_p, grads_p = gradients(plain, x)
        assert relative(dx_r, dx_p) <= 1e-8
        assert all(relative(grads_r[k], grads_p[k]) <= 1e-8 for k in grads_p)


def test_dropout_is_replayed():
    text = VECTORS.replace("module: {kind: mlp, hidden: [7], act: tanh}",
                           "module: {kind: layers, layers: [{kind: linear, features: 7}, tanh, "
                           "{kind: dropout, p: 0.5}, {kind: linear, features: 5}]}")
    rev, plain = pair(text, {})
    x = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    _, dx_r, grads_r = gradients(rev, x)
    torch.manual_seed(5)
    _, dx_p, grads_p = gradients(plain, x)
    assert relative(dx_r, dx_p) <= 1e-8
    assert all(relative(grads_r[k], grads_p[k]) <= 1e-8 for k in grads_p)


def test_inference_and_no_grad_match():
    rev, plain = pair(IMAGES, {})
    rev.eval(), plain.eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(rev(x), plain(x))


def measured(evaluations: int, backprop: str, integrator="momentum"):
    model = build(parse_spec(IMAGES, {"stages.0.evaluations": evaluations, "stages.0.backprop": backprop,
                                      "stages.0.integrator": integrator, "input.height": 4, "input.width": 4,
                                      "stem.channels": 4, "stages.0.channels": 4}))
    return analyze(model, batch=2, measure=True).total


@pytest.mark.parametrize("integrator", ["momentum", pytest.param("leapfrog", marks=pytest.mark.slow),
                                        pytest.param("second-order", marks=pytest.mark.slow)])
def test_saved_for_backward_does_not_grow_with_depth(integrator):
    shallow, deep = measured(8, "reversible", integrator), measured(64, "reversible", integrator)
    assert abs(deep.measured_saved_bytes - shallow.measured_saved_bytes) <= 0.10 * shallow.measured_saved_bytes
    assert abs(deep.measured_training_peak - shallow.measured_training_peak) <= 0.10 * shallow.measured_training_peak
    ordinary = measured(64, "saved", integrator)
    assert ordinary.measured_saved_bytes > 4 * deep.measured_saved_bytes  # what reversible backprop avoids
    for t in (shallow, deep):  # the analysis predicts it
        assert abs(t.saved_bytes - t.measured_saved_bytes) <= 0.05 * t.measured_saved_bytes
        assert abs(t.training_peak - t.measured_training_peak) <= 0.05 * t.measured_training_peak
        assert t.inference_peak == t.measured_inference_peak


def test_planner_keeps_reversible_stages():
    text = IMAGES + """  - channels: 16
    entry: {kind: transition, stride: 2}
    module: {kind: basic, form: post, after: none}
    integrator: euler
    evaluations: 6
"""
    text = text.replace("output: {classes: 10}\n", "") + "output: {classes: 10}\n"
    spec = parse_spec(text)
    loose = plan(spec, 10**9, batch=2)
    assert loose.groups == ()
    tight = plan(spec, loose.training_peak - 1, batch=2)
    assert tight.groups and all(n == 1 for n, _, _ in tight.groups)  # the reversible stage has nothing to recompute
    model = build(spec, tight.overrides())
    assert model.spec.stages[0].backprop == "reversible"
    t = analyze(model, batch=2, measure=True).total
    assert t.training_peak == tight.training_peak
    assert abs(t.measured_training_peak - t.training_peak) <= 0.05 * t.training_peak
    assert "stage 0: reversible backprop" in tight.summary()


def test_visible_in_check_draw_and_artifacts(tmp_path):
    path = tmp_path / "rev.yaml"
    path.write_text(IMAGES)
    result = CliRunner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[1:3]
    assert header.split()[-1] == "backprop" and row.split()[-1] == "reversible"
    model = build(str(path))
    assert "run_reversible" in model.code
    dot = tmp_path / "rev.dot"
    assert CliRunner().invoke(cli, ["draw", str(path), "-o", str(dot)]).exit_code == 0
    assert "(reversible: rebuilt in backward)" in dot.read_text()
    save(model, tmp_path / "rev.pt")
    again = load(tmp_path / "rev.pt")
    assert again.spec.stages[0].backprop == "reversible" and "run_reversible" in again.code
    x = torch.randn(2, 3, 8, 8)
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x))


def test_regional_refuses_and_export_works(tmp_path):
    import rkcompile
    from rkcompile.export import export_program

    model = build(parse_spec(IMAGES))
    with pytest.raises(RkcompileError, match=r"^regional compilation .* stage 0 has 'backprop: reversible', which "
                                             r"runs all its blocks inside one autograd.Function; use mode='full'"):
        rkcompile.compile(model, mode="regional")
    model.eval()
    x = torch.randn(3, 3, 8, 8)
    program = export_program(model, torch.randn(2, 3, 8, 8))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-6, rtol=0)


BAD = [
    ({"stages.0.integrator": "rk4", "stages.0.evaluations": 8}, "stages[0].backprop",
     "'backprop: reversible' needs a method with an exact inverse step (leapfrog, momentum, second-order, or an "
     "inline two-step method with α_1 ≠ 0 and β_1 = 0); rk4: an RK step is not invertible from its output"),
    ({"stages.0.integrator": "ab2"}, "stages[0].backprop", "ab2: it does not give y_{n−1} from y_n and y_{n+1}"),
    ({"stages.0.integrator": "lm-resnet"}, "stages[0].backprop",
     "lm-resnet's inverse step divides by its learnable k_n, drawn from (-0.1, 0) at initialisation"),
    ({"stages.0.module.after": "relu"}, "stages[0].module.after",
     "the 'relu' activation after each block's sum is not invertible: use 'after: none'"),
    ({"stages.0.checkpoint": [[0, 1]]}, "stages[0].checkpoint",
     "a reversible stage saves no block activations, so its blocks have nothing to checkpoint"),
    ({"stages.0.backprop": "sometimes"}, "stages[0].backprop", "unknown value 'sometimes'; expected one of saved, reversible"),
]


@pytest.mark.parametrize("overrides, where, message", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_inputs(tmp_path, overrides, where, message):
    with pytest.raises(SpecError) as e:
        parse_spec(IMAGES, overrides)
    assert where in str(e.value) and message in str(e.value)
    path = tmp_path / "bad.yaml"
    path.write_text(IMAGES)
    args = ["check", str(path)] + [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    line = result.output.splitlines()[0]
    # located in the file, or at the --set argument that set the faulty field
    sets = tuple(f"error: --set {k}={v}: " for k, v in overrides.items())
    assert line.startswith((f"error: {path}:", *sets)) and f": {where}: " in line and message in line
    assert "Traceback" not in result.output


def test_startup_previous_across_a_reversible_stage():
    text = VECTORS.replace("output: {classes: 3}\n", """  - features: 5
    module: {kind: mlp, hidden: [7], act: tanh}
    integrator: {method: momentum, startup: previous}
    evaluations: 2
    step: {h: "1/2"}
output: {classes: 3}
""")
    with pytest.raises(SpecError, match=r"stages\[1\]\.integrator\.startup: 'startup: previous' reads the previous "
                                        r"stage's y_\{N−1\}, which its 'backprop: reversible' does not keep"):
        parse_spec(text)
    with pytest.raises(SpecError, match=r"stages\[1\]\.integrator\.startup: 'backprop: reversible' rebuilds the states of one "
                                        r"stage; 'startup: previous' carries history in"):
        parse_spec(text, {"stages.0.backprop": "saved", "stages.1.backprop": "reversible"})


def test_timeline_refuses_a_reversible_stage(tmp_path):
    path = tmp_path / "rev.yaml"
    path.write_text(IMAGES)
    result = CliRunner().invoke(cli, ["analyze", str(path), "--batch", "2", "--timeline", str(tmp_path / "t.png")])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "error: the timeline follows the graph node by node, but stage 0 runs all its blocks as one node "
        "('backprop: reversible'); draw it with --set stages.0.backprop=saved, or read its peaks from analyze")
    assert not (tmp_path / "t.png").exists()
