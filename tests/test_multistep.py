"""Multistep methods: order (exact, against nodepy), the root condition, the library's facts, and bad methods."""

from __future__ import annotations

from fractions import Fraction

import nodepy.linear_multistep_method as nodepy_lm
import pytest

from rkcompile.errors import TableauError
from rkcompile.multistep import LinearMultistep, get_multistep, list_multistep, momentum

F = Fraction


def from_nodepy(method) -> LinearMultistep:
    """nodepy's Σ_j α_j y_{n+j} = h Σ_j β_j f_{n+j} (α_k = 1, explicit) in our lag form y_{n+1} = Σ α'_j y_{n−j} + …"""
    k = len(method.alpha) - 1
    alpha = [F(str(method.alpha[j])) for j in range(k)]
    beta = [F(str(method.beta[j])) for j in range(k)]
    assert F(str(method.alpha[k])) == 1 and F(str(method.beta[k])) == 0
    return LinearMultistep(str(method.name), tuple(-alpha[k - 1 - j] for j in range(k)),
                           tuple(beta[k - 1 - j] for j in range(k)))


NODEPY = [nodepy_lm.Adams_Bashforth(k) for k in range(1, 7)] + [nodepy_lm.Nystrom(k) for k in range(2, 6)] + \
    [nodepy_lm.elm_ssp2(k) for k in range(3, 6)]


@pytest.mark.parametrize("method", NODEPY, ids=lambda m: f"{m.name}-{len(m.alpha) - 1}")
def test_order_agrees_with_nodepy(method):
    assert from_nodepy(method).order == method.order()


@pytest.mark.parametrize("name,order,steps", [("ab2", 2, 2), ("ab3", 3, 3), ("ab4", 4, 4), ("leapfrog", 2, 2),
                                              ("lm-resnet", 1, 2), ("momentum", 1, 2), ("second-order", 2, 2)])
def test_library_orders_and_history(name, order, steps):
    m = get_multistep(name)
    assert (m.order, m.steps) == (order, steps)


def test_adams_bashforth_coefficients_are_the_textbook_ones():
    assert get_multistep("ab3").beta == (F(23, 12), F(-16, 12), F(5, 12))
    assert get_multistep("ab4").beta == (F(55, 24), F(-59, 24), F(37, 24), F(-9, 24))


def test_every_library_method_has_a_startup_and_a_description():
    for name in list_multistep():
        m = get_multistep(name)
        assert m.startup and m.name in m.describe() and f"order {m.order}" in m.describe()


def test_leapfrog_is_weakly_stable_and_ab_strongly():
    assert get_multistep("leapfrog").stability().startswith("weakly stable (roots 1, -1)")
    assert get_multistep("ab3").stability() == "strongly stable"


def test_momentum_written_on_y_is_consistent_for_any_gamma():
    for g in (F(0), F(1, 2), F(9, 10), F(-1, 2)):
        m = momentum(g)
        assert m.alpha == (1 + g, -g) and m.beta == (1 - g, 0) and m.order == 1


def test_momentum_with_gamma_one_is_not_zero_stable():
    with pytest.raises(TableauError, match=r"double root ζ = 1 on the unit circle"):
        momentum(F(1))


def test_a_root_outside_the_unit_circle_is_named():
    # ρ(ζ) = ζ² − 5/2 ζ + 3/2 = (ζ − 1)(ζ − 3/2); σ(1) = ρ'(1) = −1/2 keeps it consistent
    with pytest.raises(TableauError) as info:
        LinearMultistep("bad", (F(5, 2), F(-3, 2)), (F(-1, 2), F(0)))
    assert str(info.value) == ("multistep method 'bad' is not zero-stable: ρ(ζ) = ζ^2 − 5/2ζ + 3/2 has the root "
                               "ζ = 1.5 outside the unit circle (root condition)")


def test_a_complex_root_outside_is_named_with_its_imaginary_part():
    # ρ(ζ) = (ζ − 1)(ζ² + 2): roots ±1.41421i; σ(1) = ρ'(1) = 3
    with pytest.raises(TableauError, match=r"root ζ = 0[+−]1\.41421i outside the unit circle"):
        LinearMultistep("bad", (F(1), F(-2), F(2)), (F(3), F(0), F(0)))


def test_inconsistent_methods_are_rejected():
    with pytest.raises(TableauError, match=r"not consistent: it violates Σα = 1 \(C_0 = 0\); C_0 = -1/2"):
        LinearMultistep("bad", (F(1, 2), F(1)), (F(1), F(0)))
    with pytest.raises(TableauError, match=r"violates the order condition C_1 = 0 \(ρ'\(1\) = σ\(1\)\); C_1 = -1"):
        LinearMultistep("bad", (F(1), F(0)), (F(1), F(1)))


def test_second_order_root_condition_allows_the_double_root_but_not_a_triple():
    assert get_multistep("second-order").order == 2
    # ρ(ζ) = (ζ − 1)³ = ζ³ − 3ζ² + 3ζ − 1, consistent for y'' = F needs ρ''(1) = 2σ(1) = 0 … reject by stability
    with pytest.raises(TableauError, match=r"triple root ζ = 1"):
        LinearMultistep("bad", (F(3), F(-3), F(1)), (F(0), F(1), F(-1)), derivative=2)


def test_float_coefficients_are_checked_numerically():
    m = LinearMultistep("ab2-float", (1.0, 0.0), (1.5, -0.5))
    assert m.order == 2
    with pytest.raises(TableauError, match="outside the unit circle"):
        LinearMultistep("bad", (2.5, -1.5), (-0.5, 0.0))


@pytest.mark.parametrize("name", ["leapfrog", "second-order", "momentum"])
def test_inverse_step_undoes_a_step_in_float64(name):
    m = get_multistep(name)
    f = lambda y: -0.7 * y + 0.2 * y ** 3  # noqa: E731  (any F: the inverse needs only F(y_n))
    h, y_prev, y_n = 0.1, 0.4, 0.43
    alpha, beta = m.at(m.theta)
    hq = h ** m.derivative
    y_next = float(alpha[0]) * y_n + float(alpha[1]) * y_prev + hq * float(beta[0]) * f(y_n)
    assert abs(m.inverse_step(y_n, y_next, f(y_n), h) - y_prev) < 1e-15


def test_ab2_has_no_inverse_step():
    assert not get_multistep("ab2").reversible
    with pytest.raises(TableauError, match="has no inverse step"):
        get_multistep("ab2").inverse_step(1.0, 1.0, 1.0, 0.1)


def test_bad_shapes_are_rejected():
    with pytest.raises(TableauError, match="same positive length"):
        LinearMultistep("bad", (F(1),), (F(1), F(0)))
    with pytest.raises(TableauError, match="unknown multistep method 'ab5' \\(did you mean 'ab4'\\?\\)"):
        get_multistep("ab5")


def test_every_multistep_method_is_documented_with_its_order():
    import re
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "spec.md").read_text()
    rows = re.findall(r"^\| (`[\w-]+`(?:, `[\w-]+`)*) \| k = ([\d, ]+) \| ([\d, ]+) \|", doc, flags=re.M)
    facts = {}
    for names, steps, orders in rows:
        for name, k, p in zip(re.findall(r"`(.+?)`", names), steps.split(", "), orders.split(", ")):
            facts[name] = (int(k), int(p))
    assert facts == {n: (get_multistep(n).steps, get_multistep(n).order) for n in list_multistep()}
