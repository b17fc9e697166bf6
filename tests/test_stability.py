"""Linear stability: R(z) exactly from the tableau, real-axis extents, regions, error coefficients, plots, CLI."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

from rkcompile.cli import cli
from rkcompile.stability import MultistepStability, real_extent, runge_kutta, stability_polynomial
from rkcompile.stability_plot import growth_grid
from rkcompile.tableaux import get_tableau, list_tableaux

# nodepy's names for the built-in tableaux it also has (an independent oracle; it lacks Verner 8(9), RK4-3/8)
NODEPY = {"euler": "FE", "heun": "Heun22", "midpoint": "Mid22", "ssprk3": "SSP33", "heun3": "Heun33",
          "rk4": "RK44", "bs3": "BS3", "dopri5": "DP5", "cash-karp": "CK5"}


def test_rk4_real_axis_extent_is_the_root_of_r_minus_one():
    # R(x) = 1 for x < 0:  x (1 + x/2 + x^2/6 + x^3/24) = 0; the real root of the cubic, solved independently
    roots = np.roots([1 / 24, 1 / 6, 1 / 2, 1])
    expected = -min(r.real for r in roots if abs(r.imag) < 1e-12)
    extent = real_extent(runge_kutta(get_tableau("rk4")))
    assert extent == pytest.approx(expected, abs=1e-9) and f"{extent:.3f}" == "2.785"


def test_euler_region_is_the_unit_disc_around_minus_one():
    euler = runge_kutta(get_tableau("euler"))
    assert euler.coefficients == (1, 1) and real_extent(euler) == pytest.approx(2.0, abs=1e-9)
    theta = np.linspace(0, 2 * np.pi, 50)
    for radius, inside in ((0.999, True), (1.001, False)):
        z = -1 + radius * np.exp(1j * theta)
        assert np.all((euler.amplification(z) <= 1) == inside)
    xs, ys, growth = growth_grid(euler, points=300)  # the plotted region, pixel by pixel
    z = xs[None, :] + 1j * ys[:, None]
    disc = np.abs(1 + z) <= 1
    edge = np.abs(np.abs(1 + z) - 1) < 2 * (xs[1] - xs[0])
    assert np.array_equal((growth <= 1)[~edge], disc[~edge]) and disc.sum() > 1000


@pytest.mark.parametrize("name", sorted(NODEPY))
def test_stability_polynomial_and_error_coefficient_match_nodepy(name):
    import nodepy.runge_kutta_method as rkm

    oracle = rkm.loadRKM(NODEPY[name])
    ours = runge_kutta(get_tableau(name))
    p, q = oracle.stability_function()
    expected = [Fraction(str(c)) if not isinstance(c, Fraction) else c for c in p.coeffs[::-1]]
    assert list(q.coeffs) == [1]
    assert [float(c) for c in ours.coefficients] == pytest.approx([float(c) for c in expected], rel=1e-12)
    assert ours.order == oracle.order()
    assert ours.error_coefficient == pytest.approx(float(oracle.principal_error_norm()), rel=1e-9)


@pytest.mark.parametrize("name", list_tableaux())
def test_stability_polynomial_agrees_with_e_to_the_z_up_to_the_order(name):
    method = runge_kutta(get_tableau(name))
    from math import factorial

    for k in range(method.order + 1):
        assert float(method.coefficients[k]) == pytest.approx(1 / factorial(k), rel=1e-9)
    if get_tableau(name).is_rational:
        assert all(isinstance(c, Fraction) for c in method.coefficients)  # exact


def test_rational_tableau_gives_exact_fractions():
    assert stability_polynomial(get_tableau("rk4")) == tuple(Fraction(1, n) for n in (1, 1, 2, 6, 24))
    assert runge_kutta(get_tableau("rk4")).text() == "1 + z + 1/2 z^2 + 1/6 z^3 + 1/24 z^4"


def test_dormand_prince_error_coefficient_is_the_published_one():
    assert f"{runge_kutta(get_tableau('dopri5')).error_coefficient:.3g}" == "0.000399"  # Dormand & Prince 1980


def test_multistep_methods_use_the_same_interface():
    import nodepy.linear_multistep_method as lmm

    ab2 = MultistepStability("ab2", (Fraction(0), Fraction(-1), Fraction(1)), (Fraction(-1, 2), Fraction(3, 2), Fraction(0)))
    oracle = lmm.Adams_Bashforth(2)
    assert ab2.order == oracle.order() == 2
    assert ab2.error_coefficient == pytest.approx(5 / 12)
    assert real_extent(ab2, limit=5) == pytest.approx(1.0, abs=1e-9)  # AB2's real interval is [-1, 0]
    locus = ab2.boundary_locus(90)
    assert np.allclose(ab2.amplification(locus), 1.0, atol=1e-6)


# ------------------------------------------------------------------ command line


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_plots_several_methods_side_by_side(tmp_path):
    out = tmp_path / "regions.png"
    result = run("tableaux", "euler", "rk4", "verner89", "--plot", out)
    assert result.exit_code == 0, result.output
    assert "real axis [-2.785294, 0]" in result.stdout and "real axis [-2.000000, 0]" in result.stdout
    assert "principal error coefficient 1.4505e-02 (order 4)" in result.stdout
    from matplotlib.image import imread

    image = imread(out)
    assert image.shape[1] > 2.5 * image.shape[0]  # three panels in a row
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 20  # not blank
    svg = tmp_path / "regions.svg"
    assert run("tableaux", "rk4", "--plot", svg).exit_code == 0 and svg.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("args, code, message", [
    (["tableaux", "rk4", "--plot", "x.jpg"], 1, "error: cannot plot to x.jpg: expected a .png or .svg file\n"),
    (["tableaux", "--plot", "x.png"], 2, "--plot needs at least one NAME"),
    (["tableaux", "rk4", "rk5", "--plot", "x.png"], 1, "did you mean"),
])
def test_cli_plot_errors(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == code and message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()
