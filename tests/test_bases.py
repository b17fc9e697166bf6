"""Continuous-in-depth basis weights: constant, linear (FEM hats) and legendre theta(t); refine, project, BatchNorm.

References are written here independently of the package: hat and Legendre values by hand, a plain-Python RK
step, numpy least squares on quadrature points. All numerics in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from rkcompile import SpecError, TransformError, build, parse_spec, project, refine, remanifest
from rkcompile.artifact import load, save
from rkcompile.cli import cli
from rkcompile.cli_transform import COMMANDS
from rkcompile.mixing import basis_batch_norm
from rkcompile.render.structure import read_blocks
from rkcompile.tableaux import get_tableau

for _command in COMMANDS:
    if _command.name not in cli.commands:
        cli.add_command(_command)

# y' = G_theta(t)(y) on [0, 1]: linear(4->8) -> batchnorm -> tanh -> linear(8->4), no stem or head
SPEC = """
name: bases
seed: 0
input: {{features: 4}}
stages:
  - module: {{kind: layers, layers: [{{kind: linear, features: 8}}, batchnorm, tanh, {{kind: linear, features: 4}}]}}
    integrator: {integrator}
    steps: {steps}
    weights: {weights}
    step: {{T: 1}}
"""
SMOOTH = """
name: smooth
seed: 0
input: {{features: 4}}
stages:
  - module: {{kind: mlp, hidden: [16], act: tanh}}
    integrator: rk4
    steps: 2
    weights: {weights}
    step: {{T: 2}}
"""
LINEAR = "{kind: basis, functions: linear, pieces: 3}"
LEGENDRE = "{kind: basis, functions: legendre, degree: 2}"


def model(weights: str, integrator: str = "rk4", steps: int = 2):
    m = build(parse_spec(SPEC.format(weights=weights, integrator=integrator, steps=steps))).double()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # distinct coefficients, as training would leave them
        for t in m.parameters():
            t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.5)
        for name, module in m.named_modules():
            if isinstance(module, torch.nn.BatchNorm1d):  # variances stay positive for every basis: P_0 dominates
                module.running_mean.copy_(torch.randn(8, generator=g, dtype=torch.float64) * 0.3)
                var = torch.rand(8, generator=g, dtype=torch.float64)
                module.running_var.copy_(var + 0.5 if "piece0" in name else 0.1 * var + 0.5 *
                                         ("legendre" not in str(m.spec.stages[0].weights.basis)))
    return m.eval()


def inputs(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def hat(k: int, s: float, nodes: int) -> float:
    return max(0.0, 1 - abs(s * (nodes - 1) - k))


def legendre(j: int, s: float) -> float:
    return np.polynomial.legendre.Legendre.basis(j)(2 * s - 1)


def theta(m, phi: list[float], name: str) -> torch.Tensor:
    return sum(w * m.get_submodule(f"stage0.piece{p}").get_parameter(name) if "running" not in name else
               w * m.get_submodule(f"stage0.piece{p}").get_buffer(name) for p, w in enumerate(phi))


def hand_f(m, phi: list[float], y: torch.Tensor) -> torch.Tensor:
    """F at weights sum_p phi_p theta_p, written out: linear, batchnorm (eval), tanh, linear."""
    z = y @ theta(m, phi, "fc1.weight").T + theta(m, phi, "fc1.bias")
    mean, var = theta(m, phi, "bn1.running_mean"), theta(m, phi, "bn1.running_var")
    z = (z - mean) / torch.sqrt(var + 1e-5) * theta(m, phi, "bn1.weight") + theta(m, phi, "bn1.bias")
    z = torch.tanh(z)
    return z @ theta(m, phi, "fc2.weight").T + theta(m, phi, "fc2.bias")


@pytest.mark.parametrize("weights, phi", [(LINEAR, lambda s: [hat(k, s, 3) for k in range(3)]),
                                          (LEGENDRE, lambda s: [legendre(j, s) for j in range(3)])])
@pytest.mark.parametrize("integrator", ["rk4", "dopri5", "heun3"])
def test_compiled_steps_equal_a_plain_rk_step_with_hand_interpolated_weights(weights, phi, integrator):
    m, y = model(weights, integrator, steps=3), inputs(16, 4)
    t = get_tableau(integrator).pruned()
    h = 1 / 3
    ref = y.clone()
    for n in range(3):
        ks = []
        for i in range(t.stages):
            z = ref + h * sum(float(t.A[i][j]) * ks[j] for j in range(i))
            ks.append(hand_f(m, phi((n + float(t.c[i])) / 3), z))
        ref = ref + h * sum(float(b) * k for b, k in zip(t.b, ks))
    assert (m(y) - ref).abs().max().item() < 1e-10


def test_only_non_zero_basis_functions_are_emitted_and_drawn():
    m = model(LINEAR, "rk4", steps=2)  # nodes at s = 0, 1/2, 1; rk4 samples s = 0, 1/4, 1/4, 1/2, ...
    views = [v for v in read_blocks(m) if v.kind == "step"]
    assert [e.weights for e in views[0].evaluations] == ["piece0", "0.5·piece0 + 0.5·piece1",
                                                         "0.5·piece0 + 0.5·piece1", "piece1"]
    reads = [n.target for n in m.graph.nodes if n.op == "get_attr" and str(n.target).endswith("fc1.weight")]
    p0, p1, p2 = (f"stage0.piece{p}.fc1.weight" for p in range(3))
    assert reads == [p0, p0, p1, p0, p1, p1] + [p1, p1, p2, p1, p2, p2]  # k1, k2, k3, k4 of blocks 0 and 1
    assert "stage0.piece2" in dict(m.named_modules())  # whole F kept, even the parts read only by get_attr


@pytest.mark.parametrize("weights, size", [("{kind: basis, pieces: 3}", 3), (LINEAR, 3), (LEGENDRE, 3),
                                           ("{kind: basis, functions: linear, pieces: 5}", 5),
                                           ("{kind: basis, functions: legendre, degree: 0}", 1)])
def test_parameters_depend_on_the_basis_alone(weights, size):
    f = 4 * 8 + 8 + 2 * 8 + 8 * 4 + 4  # linear, batchnorm affine, linear
    counts = {sum(p.numel() for p in build(parse_spec(SPEC.format(weights=weights, integrator=i, steps=s))).parameters())
              for i in ("euler", "rk4", "dopri5", "verner89") for s in (1, 2, 7)}
    assert counts == {size * f}


@pytest.mark.parametrize("weights, after", [(LINEAR, "basis(linear, 5)"), (LEGENDRE, "basis(legendre, d=5)"),
                                            ("{kind: basis, pieces: 3}", "basis(6)")])
def test_refine_is_exact_for_every_basis(weights, after):
    # measured: 0 for all three (new coefficients reproduce theta(t) exactly at every sampled time)
    m, y = model(weights, "rk4", steps=3), inputs(16, 4)
    r = refine(m, steps=False)
    assert r.spec.stages[0].weights.label() == after
    assert (r(y) - m(y)).abs().max().item() <= 1e-12


@pytest.mark.parametrize("weights, target, exact", [
    ("{kind: basis, functions: linear, pieces: 3}", {"functions": "linear", "pieces": 9}, True),
    ("{kind: basis, functions: linear, pieces: 2}", {"functions": "legendre", "degree": 1}, True),  # both linear
    ("{kind: basis, pieces: 2}", {"functions": "constant", "pieces": 6}, True),
    ("{kind: basis, functions: legendre, degree: 2}", {"degree": 6}, True),
    ("{kind: basis, functions: linear, pieces: 3}", {"functions": "legendre", "degree": 3}, False),  # a kink at 1/2
    ("{kind: basis, pieces: 2}", {"functions": "linear", "pieces": 7}, False),  # a jump
])
def test_projection_onto_a_richer_basis_of_the_family_is_exact(weights, target, exact):
    # measured: 0 to 3e-16 when the new basis contains theta(t); 0.01 to 0.1 when it does not
    m, y = model(weights, "rk4", steps=3), inputs(16, 4)
    gap = (project(m, **target)(y) - m(y)).abs().max().item()
    assert (gap <= 1e-12) == exact, gap


def _quadrature(breaks: list[float], n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    pts = np.concatenate([a + (b - a) * (x + 1) / 2 for a, b in zip(breaks, breaks[1:])])
    wts = np.concatenate([w * (b - a) / 2 for a, b in zip(breaks, breaks[1:])])
    return pts, wts


@pytest.mark.parametrize("old, new, phi_old, phi_new, breaks", [
    (LINEAR.replace("3", "5"), {"pieces": 3}, lambda s: [hat(k, s, 5) for k in range(5)],
     lambda s: [hat(k, s, 3) for k in range(3)], [0, 0.25, 0.5, 0.75, 1]),
    (LEGENDRE.replace("2", "4"), {"degree": 1}, lambda s: [legendre(j, s) for j in range(5)],
     lambda s: [legendre(j, s) for j in range(2)], [0, 1]),
    (LINEAR.replace("3", "4"), {"functions": "constant", "pieces": 2}, lambda s: [hat(k, s, 4) for k in range(4)],
     lambda s: [float(s < 0.5), float(s >= 0.5)], [0, 1 / 3, 0.5, 2 / 3, 1]),
])
def test_projection_onto_a_coarser_basis_is_least_squares_on_quadrature_points(old, new, phi_old, phi_new, breaks):
    m = model(old, "rk4", steps=3)
    p = project(m, **new)
    pts, wts = _quadrature(breaks, 4)
    A_old = np.array([phi_old(s) for s in pts])
    A_new = np.sqrt(wts)[:, None] * np.array([phi_new(s) for s in pts])
    size_old, size_new = A_old.shape[1], A_new.shape[1]
    for name in ("fc1.weight", "fc2.bias", "bn1.weight", "bn1.running_mean"):
        values = np.stack([m.get_submodule(f"stage0.piece{q}").state_dict()[name].numpy().ravel()
                           for q in range(size_old)])
        target = np.sqrt(wts)[:, None] * (A_old @ values)
        expected, *_ = np.linalg.lstsq(A_new, target, rcond=None)
        got = np.stack([p.get_submodule(f"stage0.piece{q}").state_dict()[name].numpy().ravel()
                        for q in range(size_new)])
        assert np.abs(got - expected).max() < 1e-12, name


def test_remanifest_of_a_smooth_linear_basis_converges_at_rk4_order_off_the_nodes():
    # theta linear in t on 3 nodes (collinear coefficients, from projecting a 2-node basis) with odd step counts,
    # so the middle node t = 1 lies inside a step; measured slopes 3.96, 3.98, 3.99
    two = build(parse_spec(SMOOTH.format(weights="{kind: basis, functions: linear, pieces: 2}"))).double()
    with torch.no_grad():
        for t in two.parameters():
            t.mul_(2)
    m, x = project(two, pieces=3), inputs(64, 4)
    reference = remanifest(m, integrator="rk4", steps=243)(x)
    steps = [3, 5, 9, 17]
    errors = [(remanifest(m, steps=n)(x) - reference).abs().max().item() for n in steps]
    orders = [math.log(a / b) / math.log(m2 / m1) for a, b, m1, m2 in zip(errors, errors[1:], steps, steps[1:])]
    assert min(orders) >= 3.5, (errors, orders)


def test_batch_norm_statistics_follow_the_basis():
    layers = [torch.nn.BatchNorm1d(3).double() for _ in range(2)]
    with torch.no_grad():
        layers[1].running_mean.fill_(1.0)
        layers[1].running_var.fill_(2.0)
    x, phi = inputs(32, 3), (0.25, 0.75)
    means, variances = [tuple(getattr(n, s) for n in layers) for s in ("running_mean", "running_var")]
    counts = tuple(n.num_batches_tracked for n in layers)
    before = [sum(p * t.clone() for p, t in zip(phi, stats)) for stats in (means, variances)]
    out = basis_batch_norm(x, None, None, means, variances, counts, phi, layers[0])
    assert torch.allclose(out, F.batch_norm(x, None, None, training=True), atol=1e-12)
    m = layers[0].momentum  # r(t) moves exactly as one BatchNorm's running average would
    for stat, old, batch in zip((means, variances), before, (x.mean(0), x.var(0))):
        now = sum(p * t for p, t in zip(phi, stat))
        assert torch.allclose(now, (1 - m) * old + m * batch, atol=1e-12)
    layers[0].eval()
    mean, var = (sum(p * t for p, t in zip(phi, stats)) for stats in (means, variances))
    out = basis_batch_norm(x, None, None, means, variances, counts, phi, layers[0])
    assert torch.allclose(out, (x - mean) / torch.sqrt(var + 1e-5), atol=1e-12)
    # one piece of weight 1 is PyTorch's own BatchNorm update
    plain, ours = torch.nn.BatchNorm1d(3).double(), torch.nn.BatchNorm1d(3).double()
    plain(x)
    basis_batch_norm(x, None, None, (ours.running_mean,), (ours.running_var,), (ours.num_batches_tracked,), (1,),
                     ours)
    assert torch.allclose(plain.running_mean, ours.running_mean) and torch.allclose(plain.running_var,
                                                                                    ours.running_var)


def test_training_a_linear_basis_moves_only_the_nodes_it_samples():
    m = model("{kind: basis, functions: linear, pieces: 5}", "euler", steps=2)  # samples s = 0 and 1/2 only
    before = {k: v.clone() for k, v in m.state_dict().items() if "running_mean" in k}
    m.train()
    m(inputs(16, 4)).square().sum().backward()  # statistics updated in place are never saved for backward
    assert {name.split(".")[1] for name, p in m.named_parameters() if p.grad is not None} == {"piece0", "piece2"}
    moved = {k for k, v in m.state_dict().items() if "running_mean" in k and not torch.equal(v, before[k])}
    assert moved == {"stage0.piece0.bn1.running_mean", "stage0.piece2.bn1.running_mean"}


def test_save_load_and_analyze_a_continuous_basis(tmp_path):
    import rkcompile

    m, y = model(LEGENDRE).float(), inputs(4, 4).float()
    save(m, tmp_path / "m.pt")
    back = load(tmp_path / "m.pt").eval()
    assert back.spec.stages[0].weights.label() == "basis(legendre, d=2)" and torch.equal(back(y), m(y))
    report = rkcompile.analyze(build(parse_spec(SPEC.format(weights=LEGENDRE, integrator="rk4", steps=2))), batch=8)
    assert report.total.parameters == 3 * (4 * 8 + 8 + 16 + 32 + 4) and report.total.flops > 0


@pytest.mark.parametrize("weights, message", [
    ("{kind: basis, functions: linear, pieces: 1}", "9:47: stages[0].weights.pieces: a linear basis needs at least 2 "
     "nodes (its hat functions span 1 element), found pieces: 1"),
    ("{kind: basis, functions: legendre, degree: 17}", "9:49: stages[0].weights.degree: degree 17 is out of range: a "
     "legendre basis takes 0 to 16"),
    ("{kind: basis, functions: legendre, pieces: 3}", "9:49: stages[0].weights.pieces: a legendre basis is sized by "
     "its 'degree' (d + 1 coefficients), not 'pieces'"),
    ("{kind: basis, functions: cubic, pieces: 3}", "9:28: stages[0].weights.functions: unknown basis family 'cubic'; "
     "expected one of constant, linear, legendre"),
    ("{kind: basis, functions: linear, degree: 2}", "9:47: stages[0].weights.degree: 'degree' sizes a legendre "
     "basis; a linear basis is sized by 'pieces'"),
])
def test_bad_bases_are_located_errors(weights, message):
    with pytest.raises(SpecError) as e:
        parse_spec(SPEC.format(weights=weights, integrator="rk4", steps=2))
    assert str(e.value).endswith(message), str(e.value)


def test_projecting_a_per_evaluation_model_is_an_error(tmp_path):
    m = build(parse_spec(SPEC.format(weights="per-evaluation", integrator="rk4", steps=2)))
    with pytest.raises(TransformError, match="project: no stage to transform: stage 0 has per-evaluation weights: "
                                             "project maps a basis theta"):
        project(m, pieces=2)
    save(m, tmp_path / "m.pt")
    result = CliRunner().invoke(cli, ["project", str(tmp_path / "m.pt"), "--pieces", "2", "-o", str(tmp_path / "o.pt")])
    assert result.exit_code == 1 and not (tmp_path / "o.pt").exists()
    assert result.output.strip() == ("error: project: no stage to transform: stage 0 has per-evaluation weights: "
                                     "project maps a basis theta(t) onto another basis; only basis stages have one")


@pytest.mark.parametrize("args, message", [
    (["--functions", "linear", "--pieces", "1"], "error: project: stage 0: a linear basis needs at least 2 nodes "
     "(its hat functions span 1 element), found pieces: 1"),
    (["--functions", "legendre", "--degree", "20"], "error: project: stage 0: degree 20 is out of range: a legendre "
     "basis takes 0 to 16"),
    (["--functions", "spline"], "error: project: unknown basis family 'spline' (did you mean 'linear'?); expected one of constant, linear, "
     "legendre"),
])
def test_cli_project_errors(tmp_path, args, message):
    save(build(parse_spec(SPEC.format(weights=LINEAR, integrator="rk4", steps=2))), tmp_path / "m.pt")
    result = CliRunner().invoke(cli, ["project", str(tmp_path / "m.pt"), *args, "-o", str(tmp_path / "o.pt")])
    assert result.exit_code == 1 and result.output.strip() == message


def test_cli_project_writes_the_projected_model(tmp_path):
    save(model(LINEAR), tmp_path / "m.pt")
    result = CliRunner().invoke(cli, ["project", str(tmp_path / "m.pt"), "--functions", "legendre", "--degree", "1",
                                      "-o", str(tmp_path / "o.pt")])
    assert result.exit_code == 0, result.output
    assert load(tmp_path / "o.pt").spec.stages[0].weights.label() == "basis(legendre, d=1)"
