"""Tests of the Tableau type, rooted trees / order conditions, and the built-in tableau registry."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rkcompile.errors import TableauError
from rkcompile.tableau import Tableau
from rkcompile.tableaux import get_tableau, list_tableaux, register_tableau
from rkcompile.trees import count_trees, rooted_trees

# name: (order, embedded order, stages), as documented in the source each built-in cites (see its `source`):
# Butcher 2016 Sec. 23 for the classical methods; Bogacki & Shampine 1989; Fehlberg 1969 (4th-order solution
# propagated); Cash & Karp 1990; Dormand & Prince 1980; Tsitouras 2011; Prince & Dormand 1981; Verner 1978.
DOCUMENTED = {
    "euler": (1, None, 1),
    "midpoint": (2, None, 2),
    "heun": (2, None, 2),
    "ralston": (2, None, 2),
    "heun3": (3, None, 3),
    "kutta3": (3, None, 3),
    "ssprk3": (3, None, 3),
    "bs3": (3, 2, 4),
    "rk4": (4, None, 4),
    "rk4-38": (4, None, 4),
    "rkf45": (4, 5, 6),
    "cash-karp": (5, 4, 6),
    "dopri5": (5, 4, 7),
    "tsit5": (5, 4, 7),
    "pd8": (8, 7, 13),
    "verner89": (8, 9, 16),
}

VERNER_YAML = Path(__file__).resolve().parent / "data" / "verner89.yaml"  # an independent transcription of Verner (1978)


def _verner_rows(**changes: str) -> dict:
    """verner89's rows as text, with entries replaced: changes like a_6_1="..." or b_8="..." (1-based)."""
    t = get_tableau("verner89")
    text = t.labels
    A = [list(row) for row in text.A]
    b = list(text.b)
    for key, value in changes.items():
        part, *idx = key.split("_")
        if part == "a":
            A[int(idx[0]) - 1][int(idx[1]) - 1] = value
        else:
            b[int(idx[0]) - 1] = value
    return dict(c=list(text.c), A=A, b=b)


# ---------------------------------------------------------------- rooted trees
def test_tree_counts():
    assert [count_trees(n) for n in range(1, 11)] == [1, 1, 2, 4, 9, 20, 48, 115, 286, 719]
    assert sum(count_trees(n) for n in range(1, 10)) == 486
    trees = rooted_trees()
    assert len(trees) == 1205
    assert all(max((trees[k].order for k in t.children), default=0) < t.order for t in trees)


def test_tree_gammas():
    trees = rooted_trees()
    assert sorted(t.gamma for t in trees if t.order == 3) == [3, 6]  # bushy [tau, tau]: 3; tall [[tau]]: 6
    assert sorted(t.gamma for t in trees if t.order == 4) == [4, 8, 12, 24]  # Butcher 2016, Table 301(I)
    # the tall tree of order n has gamma = n!, the bushy tree gamma = n
    assert max(t.gamma for t in trees if t.order == 10) == math.factorial(10)
    assert min(t.gamma for t in trees if t.order == 10) == 10


# ---------------------------------------------------------------- the built-in library
def test_every_builtin_is_documented():
    assert sorted(list_tableaux()) == sorted(DOCUMENTED)


def test_registry_order_is_by_order_then_name():
    names = list_tableaux()
    keys = [(get_tableau(n).order, n) for n in names]
    assert keys == sorted(keys)
    assert names[0] == "euler"


@pytest.mark.parametrize("name", list_tableaux())
def test_builtin_matches_documentation(name):
    t = get_tableau(name)
    order, embedded, stages = DOCUMENTED[name]
    assert t.name == name
    assert t.order == order
    assert t.embedded_order == embedded
    assert t.stages == stages
    assert t.source


@pytest.mark.parametrize("name", list_tableaux())
def test_builtin_row_sums_and_consistency(name):
    c, A, b = get_tableau(name).as_float()
    assert c.dtype == A.dtype == b.dtype == np.float64
    assert A.shape == (len(c), len(c))
    np.testing.assert_allclose(A.sum(axis=1), c, rtol=0, atol=1e-12 * max(1.0, np.abs(A).max()))
    assert b.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(np.triu(A) == 0)


@pytest.mark.parametrize("name", list_tableaux())
def test_builtin_describe_and_prune(name):
    t = get_tableau(name)
    text = t.describe()
    assert text.startswith(f"{name}: {t.stages} stage") and f", order {t.order}" in text.splitlines()[0]
    assert str(t) == text
    p = t.pruned()
    assert p.order == t.order and p.name == name
    assert set(p.needed_stages()) == set(range(p.stages))


def test_stage_counts_and_fsal():
    assert [get_tableau(n).stages for n in ("verner89", "pd8", "dopri5", "bs3")] == [16, 13, 7, 4]
    assert get_tableau("dopri5").fsal and get_tableau("bs3").fsal and get_tableau("tsit5").fsal
    assert not get_tableau("rk4").fsal and not get_tableau("verner89").fsal


def test_rational_and_irrational():
    assert get_tableau("rk4").is_rational and get_tableau("pd8").is_rational
    v = get_tableau("verner89")
    assert not v.is_rational
    assert isinstance(v.c[4], float) and v.c[4] == pytest.approx((2 + 2 * math.sqrt(6)) / 15)
    assert v.labels.c[5] == "(sqrt(6)+6)/15"


def test_verner89_prunes_stages_15_and_16():
    v = get_tableau("verner89")
    assert v.needed_stages() == tuple(range(14))
    p = v.pruned()
    assert p.stages == 14 and p.order == 8 and p.b_error is None  # the 9th-order weights need stages 15-16
    assert "stages 15, 16 do not reach the output" in v.describe()


def test_bs3_prune_drops_fsal_stage_and_error_weights():
    p = get_tableau("bs3").pruned()
    assert (p.stages, p.order, p.b_error) == (3, 3, None)
    rk4 = get_tableau("rk4")
    assert rk4.pruned() is rk4


def test_verner89_matches_independent_transcription():
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(VERNER_YAML.read_text())
    ours = get_tableau("verner89")
    ref = Tableau.from_text("verner89", data["c"], data["A"], data["b"], b_embedded=data["b_embedded"],
                            source=ours.source)
    assert ref == ours


def test_order_of_a_fresh_copy():
    for name in ("pd8", "verner89"):
        t = get_tableau(name)
        fresh = Tableau(t.name, t.c, t.A, t.b, t.b_error)  # a new object: nothing cached
        assert (fresh.order, fresh.embedded_order) == (t.order, t.embedded_order)


@pytest.mark.parametrize("name", list_tableaux())
def test_order_agrees_with_nodepy(name):
    rk = pytest.importorskip("nodepy.runge_kutta_method")
    t = get_tableau(name)
    _, A, b = t.as_float()
    assert rk.ExplicitRungeKuttaMethod(A, b).order(tol=1e-10) == t.order
    if t.b_error is not None:
        emb = np.array([float(x) for x in t.b_embedded])
        assert rk.ExplicitRungeKuttaMethod(A, emb).order(tol=1e-10) == t.embedded_order


# ours -> (nodepy's name, whether nodepy's b and bhat are our b_embedded and b: it propagates Fehlberg's 5th order)
NODEPY_NAMES = {"euler": "FE", "midpoint": "Mid22", "heun": "Heun22", "ralston": "MTE22", "heun3": "Heun33",
                "ssprk3": "SSP33", "rk4": "RK44", "bs3": "BS3", "rkf45": "Fehlberg45", "cash-karp": "CK5",
                "dopri5": "DP5", "tsit5": "Tsit5", "pd8": "PD8"}


@pytest.mark.parametrize("name", sorted(NODEPY_NAMES))
def test_coefficients_agree_with_nodepy(name):
    rk = pytest.importorskip("nodepy.runge_kutta_method")
    theirs = rk.loadRKM(NODEPY_NAMES[name])
    t = get_tableau(name)
    _, A, b = t.as_float()
    np.testing.assert_allclose(A, np.asarray(theirs.A, dtype=float), rtol=1e-14, atol=1e-15)
    b_ref = np.asarray(theirs.bhat if name == "rkf45" else theirs.b, dtype=float)
    np.testing.assert_allclose(b, b_ref, rtol=1e-14, atol=1e-15)
    if t.b_error is not None:
        emb_ref = np.asarray(theirs.b if name == "rkf45" else theirs.bhat, dtype=float)
        np.testing.assert_allclose([float(x) for x in t.b_embedded], emb_ref, rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------- registry errors
@pytest.mark.parametrize("bad", ["rk5", "dorpi5", "DOPRI"])
def test_unknown_name_suggests_dopri5(bad):
    with pytest.raises(TableauError) as err:
        get_tableau(bad)
    msg = str(err.value)
    assert msg.startswith(f"unknown tableau {bad!r} (did you mean 'dopri5'?); valid names: euler, ")
    assert all(n in msg for n in list_tableaux())


def test_unknown_name_without_suggestion():
    with pytest.raises(TableauError, match=r"^unknown tableau 'zzz'; valid names: euler, heun"):
        get_tableau("zzz")
    with pytest.raises(TableauError, match="a tableau name must be a string, found int"):
        get_tableau(4)


def test_lookup_is_case_insensitive():
    assert get_tableau("RK4") is get_tableau("rk4") is get_tableau(" Rk4 ")


def test_register_rejects_duplicates_and_non_tableaux():
    with pytest.raises(TableauError, match="a tableau named 'rk4' is already registered"):
        register_tableau(get_tableau("rk4"))
    with pytest.raises(TableauError, match="register_tableau expects a Tableau, found dict"):
        register_tableau({})


# ---------------------------------------------------------------- construction forms
RK4_FULL = dict(c=["0", "1/2", "1/2", "1"], b=["1/6", "1/3", "1/3", "1/6"],
                A=[[0, 0, 0, 0], ["1/2", 0, 0, 0], [0, "1/2", 0, 0], [0, 0, 1, 0]])


@pytest.mark.parametrize(
    "A",
    [
        RK4_FULL["A"],
        [[], ["1/2"], [0, "1/2"], [0, 0, 1]],  # strictly lower rows
        [[0], ["1/2", 0], [0, "1/2", 0], [0, 0, 1, 0]],  # lower rows with the diagonal
        [["1/2"], [0, "1/2"], [0, 0, 1]],  # rows 2..s only (diffrax's a_lower)
        [[0, 0, 0, 0], [0.5], [0, 0.5, 0], [0, 0, 1, 0]],  # mixed, floats taken as decimal literals
    ],
)
def test_from_text_accepts_full_and_lower_triangular_rows(A):
    t = Tableau.from_text("rk4", RK4_FULL["c"], A, RK4_FULL["b"])
    rk4 = get_tableau("rk4")
    assert (t.c, t.A, t.b) == (rk4.c, rk4.A, rk4.b)
    assert t.is_rational and t.order == 4 and t.labels.A[1] == ("1/2", "0", "0", "0")


def test_direct_construction_keeps_floats_and_coerces_ints():
    t = Tableau("mid", c=[0, 0.5], A=[[0, 0], [0.5, 0]], b=[0, 1])
    assert t.c == (Fraction(0), 0.5) and isinstance(t.c[1], float) and isinstance(t.b[1], Fraction)
    assert t.order == 2 and not t.is_rational and t.labels is None
    assert "mid: 2 stages, order 2" in t.describe()
    t2 = Tableau("mid", c=np.array([0.0, 0.5]), A=np.array([[0.0, 0.0], [0.5, 0.0]]), b=np.array([0.0, 1.0]))
    assert t2.order == 2 and hash(t2) == hash(Tableau("mid", (0.0, 0.5), ((0.0, 0.0), (0.5, 0.0)), (0.0, 1.0)))


def test_b_error_and_b_embedded_agree():
    t = get_tableau("dopri5")
    same = Tableau.from_text("dopri5", t.labels.c, t.labels.A, t.labels.b, b_error=t.labels.b_error, source=t.source)
    assert same == t and same.embedded_order == 4
    assert sum(t.b_error) == 0


# ---------------------------------------------------------------- validation errors (each message asserted)
def _error(**kwargs) -> str:
    base = dict(name="t", c=RK4_FULL["c"], A=RK4_FULL["A"], b=RK4_FULL["b"])
    base.update(kwargs)
    name, c, A, b = base.pop("name"), base.pop("c"), base.pop("A"), base.pop("b")
    with pytest.raises(TableauError) as err:
        Tableau.from_text(name, c, A, b, **base)
    return str(err.value)


def test_not_explicit_names_the_first_entry_on_or_above_the_diagonal():
    msg = _error(A=[[0, 0, 0, 0], ["1/2", 0, "1/4", 0], [0, "1/2", "1/3", 0], [0, 0, 1, 0]])
    assert msg == ("tableau 't': not explicit: a_{2,3} = 1/4 is on or above the diagonal "
                   "(an explicit tableau needs a_ij = 0 for j >= i)")
    assert "a_{1,1} = 2" in _error(A=[[2, 0, 0, 0], ["1/2", 0, 0, 0], [0, "1/2", 0, 0], [0, 0, 1, 0]])


def test_row_sum_error():
    msg = _error(c=["0", "1/2", "1/3", "1"])
    assert msg == ("tableau 't': row-sum condition fails at row 3: sum_j a_{3,j} = 1/2 but c_3 = 1/3 "
                   "(difference 0.167)")


def test_consistency_error():
    assert _error(b=["1/6", "1/3", "1/3", "1/3"]) == (
        "tableau 't': not consistent: the weights b sum to 7/6 instead of 1 (difference 0.167)")


def test_ho_resnet_published_verner_bugs_are_caught():
    # HO-ResNet's published code flips the sign of b_8, so sum(b) = 1 + 54/140 = 1.3857...
    with pytest.raises(TableauError) as err:
        Tableau.from_text("verner89", **_verner_rows(b_8="27/140"))
    assert str(err.value) == ("tableau 'verner89': not consistent: the weights b sum to 97/70 instead of 1 "
                              "(difference 0.386)")
    # ... and wrong a_61, a_12,7 and a_12,10: a_61 here with a sign slip, the other two as printed in Luo et al. 2022's
    # eq. 14 (847.88 for (154922-40458*sqrt(6))/135 = 413.5, 605.73 for (26304-15176*sqrt(6))/45 = -241.5).
    with pytest.raises(TableauError, match=r"row-sum condition fails at row 6: sum_j a_\{6,j\} = 0\.5959\d+ but "
                                           r"c_6 = \(sqrt\(6\)\+6\)/15 \(difference 0\.0327\)"):
        Tableau.from_text("verner89", **_verner_rows(a_6_1="(9+sqrt(6))/150"))
    for change in ({"a_12_7": "847.88"}, {"a_12_10": "605.73"}):
        with pytest.raises(TableauError, match=r"^tableau 'verner89': row-sum condition fails at row 12: .*c_12 = 4/3"):
            Tableau.from_text("verner89", **_verner_rows(**change))
    # Luo et al. 2022 also prints a_54 with 206*sqrt(6) for 208*sqrt(6)
    with pytest.raises(TableauError, match="row-sum condition fails at row 5"):
        Tableau.from_text("verner89", **_verner_rows(a_5_4="(328+206*sqrt(6))/375"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(c=[], A=[], b=[]), "tableau 't': has no stages (c is empty); a tableau needs at least 1 stage"),
        (dict(b=["1/2", "1/2"]), "tableau 't': b has 2 entries but c has 4 (one per stage)"),
        (dict(A=[[0, 0, 0, 0], ["1/2", 0, 0, 0]]), "tableau 't': A has 2 rows but c has 4 entries (one row per stage)"),
        (dict(A=[[], ["1/2"], [0, "1/2", 0, 0, 0], [0, 0, 1]]),
         "tableau 't': row 3 of A has 5 entries; expected 4 (full row) or 2 (below the diagonal)"),
        (dict(A="1/2"), "tableau 't': A must be a list of rows (lists of coefficients)"),
        (dict(c="0"), "tableau 't': c must be a list of coefficients, found str"),
        (dict(c=["0", "1/2", "1/x", "1"]),
         "tableau 't': c_3: cannot parse coefficient '1/x': unknown name 'x' (only sqrt(...) is allowed) at "
         "position 3"),
        (dict(A=[[], ["1/2"], [0, "1/0"], [0, 0, 1]]),
         "tableau 't': a_{3,2}: cannot parse coefficient '1/0': division by zero at position 2"),
        (dict(b=["1/6", "1/3", "1/3", float("nan")]), "tableau 't': b_4: coefficient nan is not finite"),
        (dict(b=["1/6", "1/3", True, "1/6"]), "tableau 't': b_3: expected a number or an expression"),
        (dict(b_error=[0, 0, 0], b_embedded=[0, 0, 0]),
         "tableau 't': give b_error (= b - b_embedded) or b_embedded, not both"),
        (dict(b_error=[0, 0, 0]), "tableau 't': b_error has 3 entries but there are 4 stages"),
        (dict(b_embedded=[0, 0, 0]), "tableau 't': b_embedded has 3 entries but b has 4"),
        (dict(b_error=["1/2", 0, 0, 0]),
         "tableau 't': b_error (= b - b_embedded) must sum to 0, found 1/2 (the embedded weights must sum to 1 too)"),
        (dict(name=""), "a tableau's name must be a non-empty string, found ''"),
    ],
)
def test_shape_and_value_errors(kwargs, message):
    assert _error(**kwargs).startswith(message)


def test_direct_construction_errors():
    with pytest.raises(TableauError, match=r"tableau 'x': A must be 2 x 2 \(one row per stage\), found 1 rows"):
        Tableau("x", (0, 1), ((0, 0),), (Fraction(1, 2), Fraction(1, 2)))
    with pytest.raises(TableauError, match="tableau 'x': row 2 of A has 1 entries; A must be 2 x 2"):
        Tableau("x", (0, 1), ((0, 0), (1,)), (Fraction(1, 2), Fraction(1, 2)))
    with pytest.raises(TableauError, match="tableau 'x': row 2 of A must be a list of coefficients, found int"):
        Tableau("x", (0, 1), ((0, 0), 1), (Fraction(1, 2), Fraction(1, 2)))
    with pytest.raises(TableauError, match="tableau 'x': c_2: coefficient inf is not finite or too large"):
        Tableau("x", (0, math.inf), ((0, 0), (1, 0)), (Fraction(1, 2), Fraction(1, 2)))
    with pytest.raises(TableauError, match="tableau 'x': source must be a string, found int"):
        Tableau("x", (0,), ((0,),), (1,), source=3)


def test_float_tolerance_follows_the_rows_scale():
    # Verner's row 12 holds only to ~1.5e-13 in float64 (entries near 1e3): accepted; a 1e-9 error is not.
    ok = Tableau("f", c=[0, 0.3], A=[[0, 0], [0.3 + 1e-13, 0]], b=[0.5, 0.5])
    assert ok.order == 1
    with pytest.raises(TableauError, match="row-sum condition fails at row 2"):
        Tableau("f", c=[0, 0.3], A=[[0, 0], [0.3 + 1e-9, 0]], b=[0.5, 0.5])


# ---------------------------------------------------------------- property tests
_small = st.fractions(min_value=-3, max_value=3, max_denominator=6)
_coefficient = st.one_of(_small, st.floats(-3, 3, allow_nan=False), st.integers(-2, 2),
                         st.sampled_from(["1/3", "sqrt(2)/2", "(1+sqrt(5))/4", "1/0", "x", ""]),
                         st.none(), st.booleans(), st.sampled_from([math.nan, math.inf, 1e300]))
_vector = st.lists(_coefficient, max_size=7)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["r", "", 3]), c=_vector, A=st.one_of(st.lists(_vector, max_size=7), _coefficient),
       b=st.one_of(_vector, _coefficient), b_error=st.one_of(st.none(), _vector), via_text=st.booleans())
def test_random_input_builds_or_raises_tableau_error(name, c, A, b, b_error, via_text):
    try:
        if via_text:
            t = Tableau.from_text(name, c, A, b, b_error=b_error)
        else:
            t = Tableau(name, c, A, b, b_error)
    except TableauError:
        return
    assert t.order >= 1  # construction checked sum(b) = 1
    assert t.describe() and t.pruned().stages >= 1


@st.composite
def _consistent(draw):
    """A random explicit tableau with row sums = c and sum(b) = 1, exact or float."""
    s = draw(st.integers(1, 6))
    exact = draw(st.booleans())
    entry = _small if exact else st.floats(-3, 3, allow_nan=False)
    A = [[draw(entry) if j < i else 0 for j in range(s)] for i in range(s)]
    c = [sum(row, Fraction(0)) if exact else math.fsum(row) for row in A]
    b = [draw(entry) for _ in range(s - 1)]
    b.append(1 - sum(b, Fraction(0)) if exact else 1 - math.fsum(b))
    return Tableau("random", c, A, b)


@settings(max_examples=150, deadline=None)
@given(_consistent())
def test_random_consistent_tableaux_have_order_at_least_one(t):
    assert 1 <= t.order <= 10
    assert t.pruned().order == t.order  # stages that never reach the output cannot change the order
