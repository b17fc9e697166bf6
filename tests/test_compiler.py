"""Compiler: numerics against an independent plain-Python RK step, convergence orders, parameter counts."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import rkcompile
from rkcompile import build, get_tableau, graphmeta, list_tableaux, parse_spec

# Documented orders (tests/test_tableau.py cites the sources); slopes are fitted for orders <= 5.
SCHEMES = list_tableaux()


def linear_spec(integrator: str, steps: int, weights: str = "shared", T: str = "1", features: int = 3):
    """A stage integrating y' = W_p y (one linear layer, no bias) with the given tableau and weights."""
    return parse_spec(f"""
name: linear-{integrator}
seed: 0
input: {{features: {features}}}
stages:
  - module: {{kind: layers, layers: [{{kind: linear, bias: false}}]}}
    integrator: {integrator}
    steps: {steps}
    weights: {weights}
    step: {{T: "{T}"}}
""")


def reference_matrix(seed: int, n: int = 3) -> np.ndarray:
    """A fixed, well-conditioned system matrix: a rotation plus mild decay, scaled to norm ~1."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n)) / math.sqrt(n)
    return m - m.T - 0.3 * np.eye(n)


def set_weights(model, matrices: dict[str, np.ndarray]) -> None:
    """Load each F's weight (by submodule prefix) with a fixed float64 matrix."""
    with torch.no_grad():
        for prefix, m in matrices.items():
            model.get_submodule(prefix).fc1.weight.copy_(torch.from_numpy(m))


def plain_rk(f_of_t, y: list[float], t0: Fraction, h: Fraction, name: str) -> list[float]:
    """One explicit RK step written out from the textbook formula, in plain Python floats."""
    t = get_tableau(name)
    A = [[float(v) for v in row] for row in t.A]
    b = [float(v) for v in t.b]
    ks: list[list[float]] = []
    for i in range(t.stages):
        z = [y[d] + float(h) * sum(A[i][j] * ks[j][d] for j in range(i)) for d in range(len(y))]
        ks.append(f_of_t(t0, t.c[i], h, z))
    return [y[d] + float(h) * sum(b[i] * ks[i][d] for i in range(t.stages)) for d in range(len(y))]


def matvec(m: np.ndarray, z: list[float]) -> list[float]:
    return [sum(float(m[r, k]) * z[k] for k in range(len(z))) for r in range(len(z))]


@pytest.mark.parametrize("name", SCHEMES)
def test_shared_stage_matches_plain_python_step(name: str):
    m = reference_matrix(1)
    model = build(linear_spec(name, steps=3)).double()
    set_weights(model, {"stage0.f": m})
    y0 = [0.3, -1.2, 0.7]
    y, h = y0, Fraction(1, 3)
    for n in range(3):
        y = plain_rk(lambda t0, c, h, z: matvec(m, z), y, n * h, h, name)
    got = model(torch.tensor([y0], dtype=torch.float64))[0].tolist()
    assert max(abs(a - b) for a, b in zip(got, y)) < 1e-10


def reference_piece(step: int, c: Fraction | float, steps: int, pieces: int) -> int:
    """Independent statement of ContinuousNet's rule: the stage time's piece, boundaries from the left if c > 0."""
    t = (step + c) / steps  # as a fraction of T
    if isinstance(c, Fraction):
        for p in range(pieces):
            lo, hi = Fraction(p, pieces), Fraction(p + 1, pieces)
            if (lo <= t < hi and c == 0) or (lo < t <= hi and c > 0):
                return p
        return pieces - 1
    return min(int(t * pieces), pieces - 1)


@pytest.mark.parametrize("name", SCHEMES)
def test_basis_stage_matches_plain_python_step(name: str):
    pieces, steps = 3, 6
    ms = {f"stage0.piece{p}": reference_matrix(10 + p) for p in range(pieces)}
    model = build(linear_spec(name, steps=steps, weights=f"{{kind: basis, pieces: {pieces}}}")).double()
    set_weights(model, ms)
    h = Fraction(1, steps)

    def f(t0, c, h_, z):
        step = int(t0 / h_)
        return matvec(ms[f"stage0.piece{reference_piece(step, c, steps, pieces)}"], z)

    y0 = [1.0, 0.5, -0.25]
    y = y0
    for n in range(steps):
        y = plain_rk(f, y, n * h, h, name)
    got = model(torch.tensor([y0], dtype=torch.float64))[0].tolist()
    assert max(abs(a - b) for a, b in zip(got, y)) < 1e-10


def test_piece_rule_on_boundaries():
    from rkcompile.lowering import piece_index

    # 2 steps over 2 pieces: every stage of step 0 (c in [0, 1]) uses piece 0, even c = 1 on the boundary
    assert [piece_index(0, Fraction(c), 2, 2) for c in (0, Fraction(1, 2), 1)] == [0, 0, 0]
    assert [piece_index(1, Fraction(c), 2, 2) for c in (0, Fraction(1, 2), 1)] == [1, 1, 1]
    # 4 steps over 2 pieces: step 1 ends at t = T/2, which stays in piece 0 when reached from inside
    assert piece_index(1, Fraction(1), 4, 2) == 0 and piece_index(2, Fraction(0), 4, 2) == 1
    assert piece_index(3, Fraction(1), 4, 2) == 1  # the end of [0, T] is clamped into the last piece


def expm(m: np.ndarray, t: float) -> np.ndarray:
    """exp(m t) by eigen-decomposition (m is diagonalisable here)."""
    w, v = np.linalg.eig(m * t)
    return (v @ np.diag(np.exp(w)) @ np.linalg.inv(v)).real


@pytest.mark.parametrize("name", [n for n in SCHEMES if get_tableau(n).order <= 5])
def test_global_error_falls_at_the_tableau_order(name: str):
    order = get_tableau(name).order
    m = reference_matrix(2)
    y0 = np.array([0.3, -1.2, 0.7])
    exact = expm(m, 2.0) @ y0  # T = 2 keeps the finest errors well above float64 round-off
    counts = [16, 32, 64, 128] if order <= 3 else [8, 16, 32, 64]
    errors = []
    for steps in counts:
        model = build(linear_spec(name, steps=steps, T="2")).double()
        set_weights(model, {"stage0.f": m})
        got = model(torch.from_numpy(y0)[None]).detach().numpy()[0]
        errors.append(np.abs(got - exact).max())
    slope = np.polyfit(np.log([1 / s for s in counts]), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (errors, slope)


# Luo et al. 2022, Table 3: parameters in millions for E evaluations, a scheme that divides E, and our exact count
# (stem conv 1,728 + BN 128; E x (2 x 36,864 conv + 2 x 128 BN); linear 650).
HO_RESNET_TABLE3 = {
    4: (0.30, "rk4", 298_442), 8: (0.59, "midpoint", 594_378), 12: (0.89, "rk4", 890_314),
    14: (1.03, "verner89", 1_038_282), 28: (2.07, "verner89", 2_074_058),
}


@pytest.mark.parametrize("evaluations", HO_RESNET_TABLE3)
def test_ho_resnet_table3(evaluations: int):
    millions, scheme, exact = HO_RESNET_TABLE3[evaluations]
    for integrator in ("euler", scheme):
        model = build("specs/ho-resnet58-euler.yaml",
                      {"stages.0.evaluations": evaluations, "stages.0.integrator": integrator})
        assert count(model) == exact
        if evaluations != 14:
            assert round(count(model) / 1e6, 2) == millions
        else:
            # The paper prints 1.03M for E = 14, but its own F gives 1.038M = 1.04M: that row (and its 3.01M
            # for E = 42, 3.11M here) is consistent only with BN layers carrying no affine parameters
            # (73,728 per F). We follow the architecture the paper describes and record the mismatch.
            assert round(count(model) / 1e6, 2) == 1.04
            affine_free = exact - evaluations * 256
            assert round(affine_free / 1e6, 2) == millions


def test_ho_resnet_adaptive_verner_adds_one_parameter_per_block():
    assert count(build("specs/ho-resnet58-verner89-adaptive.yaml")) == count(build("specs/ho-resnet58-euler.yaml")) + 2


CHANG2018_TABLE5 = {  # Chang et al. 2018, Table 5 (CIFAR-10); CIFAR-100 adds 5,850 (wide: 11,610)
    14: (172_506, 685_994), 32: (464_154, 1_849_898), 50: (755_802, 3_013_802), 122: (1_922_394, 7_669_418),
}


@pytest.mark.parametrize("depth", CHANG2018_TABLE5)
@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("wide", [False, True])
def test_seed004_table5_exact(depth: int, classes: int, wide: bool):
    expected = CHANG2018_TABLE5[depth][wide] + (0 if classes == 10 else (11_610 if wide else 5_850))
    model = build(f"specs/resnet{depth}-{'wide-' if wide else ''}cifar{classes}.yaml")
    assert count(model) == expected


@pytest.mark.parametrize(("units", "expected"), [(2, 273_210), (8, 857_850)])
def test_continuousnet_counts_for_every_scheme(units: int, expected: int):
    # ContinuousNet's own code (afqueiruga/StatefulOdeNets) gives these counts, identical for euler/midpoint/rk4
    for scheme in ("euler", "midpoint", "rk4"):
        over = {f"stages.{i}.integrator": scheme for i in range(3)}
        assert count(build(f"specs/continuousnet-{units}-{units}-{units}.yaml", over)) == expected


def test_continuousnet_breakdown():
    model = build("specs/continuousnet-2-2-2.yaml")
    parts = {name: sum(p.numel() for p in model.get_submodule(name).parameters())
             for name in ("stem", "stage0.entry", "stage0.piece0", "stage1.entry", "stage2.entry", "head")}
    assert parts == {"stem": 464, "stage0.entry": 4_960, "stage0.piece0": 4_704, "stage1.entry": 14_528,
                     "stage2.entry": 57_728, "head": 650}


INVARIANT = "name: inv\ninput: {features: 2}\nstages:\n  - {module: {kind: layers, layers: [linear]}, evaluations: %d}\n"


def test_parameter_count_is_invariant_across_schemes_per_evaluation():
    # 420 = lcm(1, ..., 7, 14) is divisible by every built-in's pruned stage count except pd8's 13
    budget = 420
    schemes = [n for n in SCHEMES if budget % get_tableau(n).pruned().stages == 0]
    assert len(schemes) == len(SCHEMES) - 1
    counts = {n: count(build(parse_spec(INVARIANT % budget), {"stages.0.integrator": n})) for n in schemes}
    assert set(counts.values()) == {budget * 6}, counts


@pytest.mark.parametrize("name", SCHEMES)
def test_every_scheme_matches_euler_at_its_own_budget(name: str):
    budget = 2 * get_tableau(name).pruned().stages
    pair = [count(build(parse_spec(INVARIANT % budget), {"stages.0.integrator": n})) for n in (name, "euler")]
    assert pair[0] == pair[1] == budget * 6


@pytest.mark.parametrize("weights", ["shared", "{kind: basis, pieces: 4}"])
def test_parameter_count_is_invariant_across_schemes_shared_and_basis(weights: str):
    counts = {n: count(build(linear_spec(n, steps=5, weights=weights))) for n in SCHEMES}
    assert len(set(counts.values())) == 1, counts


def test_same_seed_same_code_and_state():
    a, b = build("specs/continuousnet-2-2-2.yaml"), build("specs/continuousnet-2-2-2.yaml")
    assert a.code == b.code
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    c = build("specs/continuousnet-2-2-2.yaml", {"seed": 1})
    assert not torch.equal(c.state_dict()["stem.conv.weight"], sa["stem.conv.weight"])


def test_global_rng_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build("specs/pendulum-odenet.yaml")
    assert torch.equal(torch.rand(3), expected)


def test_code_reads_like_pytorch():
    code = build("specs/ho-resnet58-rk4.yaml").code
    assert "self.stage0.block0.eval1.conv1(" in code
    assert "stage0_block0_z2 = torch.add(" in code and "alpha = 0.5" in code
    assert "alpha = 0.16666666666666666" in code  # b_1 h = 1/6 as a Python constant: nothing saved for backward
    verner = build("specs/ho-resnet58-verner89.yaml")
    assert "eval15" not in verner.code and "eval14" in verner.code  # error-estimation stages pruned


def test_learned_step_parameters():
    model = build("specs/ho-resnet58-verner89-adaptive.yaml")
    hs = [p for n, p in model.named_parameters() if n.endswith(".h")]
    assert len(hs) == 2 and all(p.shape == () and p.item() == 1.0 for p in hs)
    channel = build("specs/ho-resnet58-euler.yaml", {"stages.0.step": {"learn": "channel", "h": "1/2"}})
    hs = [p for n, p in channel.named_parameters() if n.endswith(".h")]
    assert len(hs) == 28 and hs[0].shape == (64, 1, 1) and torch.all(hs[0] == 0.5)


def test_skip_init_starts_as_identity():
    model = build("specs/spirals-rk4.yaml", {"stages.0.step.skip_init": True}).eval()
    skips = [p for n, p in model.named_parameters() if n.endswith("skip.scale")]
    assert len(skips) == 20 and all(p.item() == 0 for p in skips)  # one s per evaluation's F
    x = torch.randn(5, 2)
    before = model(x)
    with torch.no_grad():  # every k is s * F = 0 at init, so F's weights cannot change the output
        for name, p in model.named_parameters():
            if name.startswith("stage0") and not name.endswith("skip.scale"):
                p.add_(torch.randn_like(p))
    assert torch.equal(model(x), before)
    basis = build(linear_spec("rk4", steps=4, weights="{kind: basis, pieces: 2}"), {"stages.0.step.skip_init": True})
    assert count(basis) == count(build(linear_spec("rk4", steps=4, weights="{kind: basis, pieces: 2}"))) + 2


def test_model_carries_spec():
    model = build("specs/pendulum-odenet.yaml")
    assert isinstance(model.spec, rkcompile.Spec) and model.spec.name == "pendulum-odenet"


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_groupnorm_module_at_any_width():
    model = build("specs/ho-resnet58-euler.yaml", {"input.height": 8, "input.width": 8, "stem.channels": 48,
                                                    "stages.0.channels": 48, "stages.0.evaluations": 2,
                                                    "stages.0.module.norm": "groupnorm"})
    norms = [m for n, m in model.named_modules() if n.startswith("stage0.block0.eval1.gn")]
    assert norms and all(m.num_groups == 16 for m in norms)  # gcd(32, 48)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_epsilon_scales_f():
    # y + h * eps * F(y): with a time-independent F, eps = 1/2 at h = 1 equals eps = 1 at h = 1/2
    a = build(linear_spec("rk4", steps=3), {"stages.0.step": {"h": 1, "epsilon": "1/2"}}).double()
    b = build(linear_spec("rk4", steps=3), {"stages.0.step": {"h": "1/2"}}).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.allclose(a(x), b(x), atol=1e-12)
    assert "alpha = 0.08333333333333333" in a.code  # b_1 * h * eps = 1/6 * 1/2


@pytest.mark.parametrize("module", [{"kind": "basic", "form": "pre"}, {"kind": "bottleneck", "form": "pre"},
                                    {"kind": "bottleneck", "form": "post", "width": 8}])
def test_module_forms_compile_and_run(module: dict):
    model = build("specs/resnet14-cifar10.yaml", {"input.height": 8, "input.width": 8, "stem.channels": 16,
                                                  **{f"stages.{i}.module": module for i in range(3)}})
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    metas = [graphmeta.get(n) for n in model.graph.nodes]
    layers = [m.layer for m in metas if m is not None and m.block == 0 and m.stage == 0 and m.layer is not None]
    first = "bn1" if module["form"] == "pre" else "conv1"
    assert layers[0] == first, layers
