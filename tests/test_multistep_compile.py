"""Compiled multistep stages in float64 against plain-Python methods; convergence; parameters; inverse steps."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from rkcompile import build as build_spec
from rkcompile import parse_spec
from rkcompile.multistep import get_multistep
from rkcompile.tableaux import get_tableau


def build(text: str):
    """Compile a spec written as YAML text."""
    return build_spec(parse_spec(text))


# the methods written out from the literature, independent of the library: (α by lag, β by lag, start-up RK)
TEXTBOOK = {
    "ab2": ([1, 0], [1.5, -0.5], "midpoint"),
    "ab3": ([1, 0, 0], [23 / 12, -16 / 12, 5 / 12], "kutta3"),
    "ab4": ([1, 0, 0, 0], [55 / 24, -59 / 24, 37 / 24, -9 / 24], "rk4"),
    "leapfrog": ([0, 1], [2, 0], "midpoint"),
}


def linear_spec(integrator: str, steps: int, weights: str = "shared", T: str = "1", features: int = 3,
                evaluations: int | None = None) -> str:
    """A stage integrating y' = W y (one bias-free linear layer) with the given method and weights."""
    budget = f"evaluations: {evaluations}" if evaluations is not None else f"steps: {steps}"
    return f"""
name: linear
seed: 0
input: {{features: {features}}}
stages:
  - module: {{kind: layers, layers: [{{kind: linear, bias: false}}]}}
    integrator: {integrator}
    {budget}
    weights: {weights}
    step: {{T: "{T}"}}
"""


def reference_matrix(seed: int, n: int = 3) -> np.ndarray:
    """A rotation plus mild decay, norm ~1."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n)) / math.sqrt(n)
    return m - m.T - 0.3 * np.eye(n)


def set_weights(model, matrices: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for prefix, m in matrices.items():
            model.get_submodule(prefix).fc1.weight.copy_(torch.from_numpy(m))


def rk_step(f, y: np.ndarray, h: float, name: str, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One explicit RK step from the textbook formula; f(z, i) evaluates the i-th F; returns (y_{n+1}, k_1)."""
    t = get_tableau(name)
    A = [[float(v) for v in row] for row in t.A]
    ks = []
    for i in range(t.stages):
        ks.append(f(y + h * sum(A[i][j] * ks[j] for j in range(i)), offset + i))
    return y + h * sum(float(b) * k for b, k in zip(t.b, ks)), ks[0]


def textbook_multistep(name: str, f, y0: np.ndarray, h: float, steps: int) -> np.ndarray:
    """y_{n+1} = Σ α_j y_{n−j} + h Σ β_j f_{n−j}, started by k − 1 RK steps; f(z, e) is the e-th evaluation's F."""
    alpha, beta, startup = TEXTBOOK[name]
    k, s = len(alpha), get_tableau(startup).pruned().stages
    ys, fs, y, e = [], [], y0, 0
    for n in range(steps):
        if n < k - 1:
            new, f_n = rk_step(f, y, h, startup, e)
            e += s
        else:
            f_n = f(y, e)
            e += 1
            hist_y, hist_f = [y, *ys], [f_n, *fs]
            new = sum(a * hist_y[j] for j, a in enumerate(alpha) if a) + \
                h * sum(b * hist_f[j] for j, b in enumerate(beta) if b)
        ys, fs, y = [y, *ys][:k], [f_n, *fs][:k], new
    return y


def run(model, y0: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(y0)[None]).detach().numpy()[0]


@pytest.mark.parametrize("name", TEXTBOOK)
def test_shared_stage_matches_the_textbook_method(name):
    m = reference_matrix(1)
    model = build(linear_spec(name, steps=7)).double()
    set_weights(model, {"stage0.f": m})
    y0 = np.array([0.3, -1.2, 0.7])
    want = textbook_multistep(name, lambda z, e: m @ z, y0, 1 / 7, 7)
    assert np.abs(run(model, y0) - want).max() < 1e-12


@pytest.mark.parametrize("name", TEXTBOOK)
def test_per_evaluation_stage_uses_one_f_per_evaluation_start_up_included(name):
    evaluations = 9 + (len(TEXTBOOK[name][0]) - 1) * (get_tableau(TEXTBOOK[name][2]).pruned().stages - 1)
    model = build(linear_spec(name, steps=0, weights="per-evaluation", evaluations=evaluations)).double()
    stage = model.spec.stages[0]
    assert stage.total_evaluations == evaluations and stage.blocks == 9
    targets = [n for n, _ in model.named_modules() if n.endswith(tuple(f"eval{i}" for i in range(1, 5)))]
    assert len(targets) == evaluations
    ms = [reference_matrix(20 + e) for e in range(evaluations)]
    set_weights(model, dict(zip(targets, ms)))
    y0 = np.array([1.0, 0.5, -0.25])
    want = textbook_multistep(name, lambda z, e: ms[e] @ z, y0, 1 / 9, 9)
    assert np.abs(run(model, y0) - want).max() < 1e-12


def test_basis_stage_picks_the_piece_of_each_evaluation_time():
    pieces, steps = 2, 8
    ms = {f"stage0.piece{p}": reference_matrix(40 + p) for p in range(pieces)}
    model = build(linear_spec("ab3", steps=steps, weights=f"{{kind: basis, pieces: {pieces}}}")).double()
    set_weights(model, ms)
    h = 1 / steps
    times = [0, 0.5, 1, 1, 1.5, 2] + list(range(2, steps))  # kutta3 c = 0, 1/2, 1 in the two start-up steps

    def f(z, e):
        t = times[e]
        piece = 0 if t < steps / 2 or (t == steps / 2 and e in (2,)) else 1
        return ms[f"stage0.piece{piece}"] @ z

    y0 = np.array([0.2, 0.1, -0.4])
    want = textbook_multistep("ab3", f, y0, h, steps)
    assert np.abs(run(model, y0) - want).max() < 1e-12


def expm(m: np.ndarray, t: float) -> np.ndarray:
    w, v = np.linalg.eig(m * t)
    return (v @ np.diag(np.exp(w)) @ np.linalg.inv(v)).real


@pytest.mark.parametrize("name", ["ab2", "ab3", "ab4", "leapfrog"])
def test_global_error_falls_at_the_method_order(name):
    order = get_multistep(name).order
    m = reference_matrix(2)
    y0 = np.array([0.3, -1.2, 0.7])
    exact = expm(m, 2.0) @ y0
    counts = [16, 32, 64, 128]
    errors = []
    for steps in counts:
        model = build(linear_spec(name, steps=steps, T="2")).double()
        set_weights(model, {"stage0.f": m})
        errors.append(np.abs(run(model, y0) - exact).max())
    slope = np.polyfit(np.log([1 / s for s in counts]), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (errors, slope)


def test_second_order_stage_is_stormer_verlet_from_rest():
    m = reference_matrix(3)
    model = build(linear_spec("second-order", steps=6)).double()
    set_weights(model, {"stage0.f": m})
    y0 = np.array([0.5, -0.1, 0.3])
    h, prev, y = 1 / 6, y0, y0  # y_{−1} = y_0
    for _ in range(6):
        prev, y = y, 2 * y - prev + h * h * (m @ y)
    assert np.abs(run(model, y0) - y).max() < 1e-12


@pytest.mark.parametrize("gamma", ["0.9", "1/2"])
def test_momentum_stage_is_sander_et_al_in_velocity_form(gamma):
    m = reference_matrix(4)
    model = build(linear_spec(f"{{method: momentum, gamma: '{gamma}'}}", steps=5)).double()
    set_weights(model, {"stage0.f": m})
    g, h = float(Fraction(gamma)), 1 / 5
    y0 = np.array([0.5, -0.1, 0.3])
    y, v = y0, np.zeros(3)  # v_0 = 0
    for _ in range(5):
        v = g * v + (1 - g) * (m @ y)
        y = y + h * v
    assert np.abs(run(model, y0) - y).max() < 1e-12


def test_lm_resnet_stage_is_lu_et_al_with_its_learned_k():
    m = reference_matrix(5)
    model = build(linear_spec("lm-resnet", steps=6)).double()
    set_weights(model, {"stage0.f": m})
    ks = {n: float(p.detach()) for n, p in model.named_parameters() if n.endswith(".k")}
    assert sorted(ks) == [f"stage0.block{b}.k" for b in range(1, 6)]  # the first step is Euler
    assert all(-0.1 <= k <= 0 for k in ks.values())  # Lu et al. 2018: k_n ~ U(−0.1, 0)
    y0 = np.array([0.5, -0.1, 0.3])
    h = 1 / 6
    prev, y = y0, y0 + h * (m @ y0)
    for b in range(1, 6):
        k = ks[f"stage0.block{b}.k"]
        prev, y = y, (1 - k) * y + k * prev + h * (m @ y)
    assert np.abs(run(model, y0) - y).max() < 1e-12


def test_learnable_momentum_has_one_gamma_per_step_initialised_as_given():
    model = build(linear_spec("{method: momentum, gamma: 0.25, learn: true}", steps=4))
    gammas = {n: float(p.detach()) for n, p in model.named_parameters() if n.endswith(".gamma")}
    assert gammas == {f"stage0.block{b}.gamma": 0.25 for b in range(4)}


MLP = "{kind: mlp, hidden: [5]}"
SCHEMES = ["euler", "midpoint", "rk4", "ab2", "ab3", "ab4", "leapfrog", "momentum", "second-order", "lm-resnet",
           "{method: momentum, gamma: 0.5, learn: true}"]


def mlp_spec(integrator: str, weights: str, budget: str) -> str:
    return f"""
name: p
seed: 1
input: {{features: 4}}
stages:
  - module: {MLP}
    integrator: {integrator}
    {budget}
    weights: {weights}
"""


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def extra(model) -> int:
    """Parameters of the learnable coefficients (k_n, γ_n)."""
    return sum(p.numel() for n, p in model.named_parameters() if n.endswith((".k", ".gamma")))


@pytest.mark.parametrize("weights,budget", [("per-evaluation", "evaluations: 24"), ("shared", "steps: 12"),
                                            ("{kind: basis, pieces: 3}", "steps: 12")])
def test_parameters_are_identical_to_euler_up_to_the_learnable_coefficients(weights, budget):
    euler = count(build(mlp_spec("euler", weights, budget)))
    for scheme in SCHEMES:
        model = build(mlp_spec(scheme, weights, budget))
        assert count(model) - extra(model) == euler, scheme
        blocks = model.spec.stages[0].blocks
        if scheme == "lm-resnet":
            assert extra(model) == blocks - 1  # one k_n per two-step step (the first step is Euler)
        elif "learn" in scheme:
            assert extra(model) == blocks
        else:
            assert extra(model) == 0


def test_lm_resnet_adds_exactly_one_parameter_per_step():
    base = count(build(mlp_spec("euler", "per-evaluation", "evaluations: 10")))
    for e in (2, 5, 10):
        model = build(mlp_spec("lm-resnet", "per-evaluation", f"evaluations: {e}"))
        assert count(model) - count(build(mlp_spec("euler", "per-evaluation", f"evaluations: {e}"))) == e - 1
    assert count(build(mlp_spec("lm-resnet", "per-evaluation", "evaluations: 10"))) == base + 9


@pytest.mark.parametrize("name", ["leapfrog", "second-order", "momentum"])
def test_inverse_steps_walk_a_compiled_trajectory_back_to_its_start(name):
    """y_{n−1} from y_n and y_{n+1} (the step issue 13's reversible backprop builds on), float64."""
    m = reference_matrix(6)
    h, steps = "1/10", 6
    spec = f"""
name: inv
seed: 0
input: {{features: 3}}
stages:
  - module: {{kind: layers, layers: [{{kind: linear, bias: false}}]}}
    integrator: {name}
    steps: STEPS
    weights: shared
    step: {{h: "{h}"}}
"""
    y0 = torch.tensor([[0.5, -0.1, 0.3]], dtype=torch.float64)
    states = []
    f0 = torch.from_numpy(m)
    for n in range(steps + 1):
        if n == 0 or (n == 1 and name == "leapfrog"):  # leapfrog's first step is its midpoint start-up
            states.append(y0 if n == 0 else y0 + 0.1 * (y0 + 0.05 * y0 @ f0.T) @ f0.T)
            continue
        model = build(spec.replace("STEPS", str(n))).double()
        set_weights(model, {"stage0.f": m})
        states.append(model(y0).detach())
    method = model.spec.stages[0].tableau.method
    def f(z):  # F of the compiled stage: its one linear layer
        return z @ f0.T

    y_next, y_n = states[-1], states[-2]
    for n in range(steps - 1, 0, -1):
        y_prev = method.inverse_step(y_n, y_next, f(y_n), Fraction(1, 10))
        assert torch.allclose(y_prev, states[n - 1], atol=1e-13, rtol=0), n
        y_next, y_n = y_n, y_prev


def test_startup_previous_continues_the_history_across_stages():
    two = """
name: two
seed: 0
input: {features: 3}
stages:
  - module: {kind: layers, layers: [{kind: linear, bias: false}]}
    integrator: ab3
    steps: 4
    weights: shared
    step: {h: "1/8"}
  - module: {kind: layers, layers: [{kind: linear, bias: false}]}
    integrator: {method: ab3, startup: previous}
    steps: 4
    weights: shared
    step: {h: "1/8"}
"""
    m = reference_matrix(7)
    model = build(two).double()
    set_weights(model, {"stage0.f": m, "stage1.f": m})
    one = build(linear_spec("ab3", steps=8)).double()
    set_weights(one, {"stage0.f": m})
    y0 = np.array([0.1, 0.2, 0.3])
    assert np.abs(run(model, y0) - run(one, y0)).max() < 1e-14
    assert model.spec.stages[1].total_evaluations == 4


def test_check_summary_counts_start_up_evaluations():
    spec = parse_spec(mlp_spec("ab4", "per-evaluation", "evaluations: 20"))
    stage = spec.stages[0]
    assert (stage.blocks, stage.total_evaluations) == (11, 20)  # 3 RK4 start-up steps (12) + 8 AB4 steps


@pytest.mark.parametrize("pieces,order", [(1, 4), (2, 1)])
def test_remanifest_a_basis_model_built_with_rk4_to_ab4(pieces, order):
    """ContinuousNet's re-manifestation across families, against the exact flow of θ(t) in float64.

    With one piece AB4 converges at order 4; across a piece boundary its history f_{n−j} still holds the previous
    piece's F, a jump of size O(1) weighted by h: AB4 falls to first order (RK4 keeps order 4 by the open-set rule).
    """
    from rkcompile import remanifest

    ms = [reference_matrix(50 + p) for p in range(pieces)]
    model = build(linear_spec("rk4", steps=8, weights=f"{{kind: basis, pieces: {pieces}}}", T="2")).double()
    set_weights(model, {f"stage0.piece{p}": m for p, m in enumerate(ms)})
    y0 = np.array([0.3, -0.2, 0.5])
    exact = y0
    for m in ms:
        exact = expm(m, 2 / pieces) @ exact
    counts, errors = [16, 32, 64, 128], []
    for steps in counts:
        ab4 = remanifest(model, integrator="ab4", steps=steps)
        assert ab4.spec.stages[0].tableau.name == "ab4" and count(ab4) == count(model)
        errors.append(np.abs(run(ab4, y0) - exact).max())
    slope = np.polyfit(np.log([1 / s for s in counts]), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (errors, slope)


def test_remanifest_per_evaluation_keeps_the_budget_and_the_evaluation_order():
    from rkcompile import remanifest

    model = build(mlp_spec("rk4", "per-evaluation", "evaluations: 16")).double()
    ab4 = remanifest(model, integrator="ab4")  # 3 RK4 start-up steps (12 evaluations) + 4 AB4 steps
    assert ab4.spec.stages[0].blocks == 7 and count(ab4) == count(model)
    old = dict(model.named_parameters())
    new = dict(ab4.named_parameters())
    assert torch.equal(new["stage0.block3.eval1.fc1.weight"], old["stage0.block3.eval1.fc1.weight"])  # flat 12
    assert torch.equal(new["stage0.block6.eval1.fc1.weight"], old["stage0.block3.eval4.fc1.weight"])  # flat 15
    back = remanifest(ab4, integrator="rk4")
    assert all(torch.equal(p, old[n]) for n, p in back.named_parameters())
    lm = remanifest(model, integrator="lm-resnet")
    assert count(lm) == count(model) + 15
    with pytest.raises(Exception, match="a fixed budget of 16 evaluations; 5 steps of ab4 make 16|5 steps of ab4"):
        remanifest(model, integrator="ab4", steps=5)


def test_refine_a_basis_ab3_model_keeps_theta():
    from rkcompile import refine

    model = build(mlp_spec("ab3", "{kind: basis, pieces: 2}", "steps: 8")).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    split = refine(model, steps=False)
    assert torch.allclose(split(x), model(x), atol=1e-14) and count(split) == 2 * count(model)
    finer = refine(model)
    assert finer.spec.stages[0].blocks == 16


def test_save_and_load_round_trip_a_multistep_model(tmp_path):
    from rkcompile import load, save

    model = build(mlp_spec("lm-resnet", "per-evaluation", "evaluations: 6"))
    save(model, tmp_path / "m.pt")
    again = load(tmp_path / "m.pt")
    x = torch.randn(3, 4)
    assert torch.equal(again(x), model(x)) and again.spec.stages[0].tableau.name == "lm-resnet"


BAD = [
    ("{method: ab3, alpha: [1, 0], beta: [1, 0]}", "stages[0].integrator: give a built-in 'method' (ab2, ab3, ab4, "
     "leapfrog, lm-resnet, momentum, second-order) or inline 'alpha' and 'beta', not both"),
    ("{startup: rk4}", "stages[0].integrator: give 'method' or inline 'alpha' and 'beta'"),
    ("{alpha: [1, 0]}", "an inline multistep method needs both 'alpha' and 'beta'; 'beta' is missing"),
    ("{method: ab3, gamma: 0.5}", "stages[0].integrator.gamma: 'gamma' sets the momentum of 'method: momentum', "
     "found method 'ab3'"),
    ("{method: ab2, startup: rk5}", "stages[0].integrator.startup: the start-up method: unknown tableau 'rk5' (did you mean 'dopri5'?)"),
    ("{method: ab2, startup: rest}", "'startup: rest' sets y_{−j} = y_0 but ab2 also reads past values of F (β_1 ≠ 0)"),
    ("{method: momentum, gamma: 1}", "stages[0].integrator.gamma: multistep method 'momentum' is not zero-stable: "
     "ρ(ζ) = ζ^2 − 2ζ + 1 has the double root ζ = 1 on the unit circle"),
    ("{method: ab9}", "stages[0].integrator.method: unknown multistep method 'ab9'"),
    ("{alpha: [1, 0], beta: [1, 0], derivative: 3}", "stages[0].integrator.derivative: "),
    ("ab5", "stages[0].integrator: unknown tableau 'ab5'"),
]


@pytest.mark.parametrize("integrator,message", BAD, ids=[b[0] for b in BAD])
def test_bad_multistep_integrators_are_located_errors(integrator, message):
    from rkcompile.errors import SpecError

    with pytest.raises(SpecError) as info:
        parse_spec(mlp_spec(integrator, "shared", "steps: 6"), file="x.yaml")
    text = str(info.value)
    assert text.startswith("x.yaml:7:") and "\n" not in text, text
    assert message in text, text


def test_a_learnable_step_size_is_refused_for_a_multistep_stage():
    from rkcompile.errors import SpecError

    spec = mlp_spec("ab2", "per-evaluation", "evaluations: 6") + "    step: {learn: scalar}\n"
    with pytest.raises(SpecError, match=r"stages\[0\]\.step\.learn: a learnable step size scales each block of an RK "
                                        r"integrator; ab2 carries history"):
        parse_spec(spec)
