"""Minimal registers of an RK step: the rank bound against numpy, and the programs that meet it."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from rkcompile import get_tableau, list_tableaux
from rkcompile.registers import accumulate_program, register_program, register_ranks

SCHEMES = list_tableaux()


def numpy_ranks(name: str, h: float = 1.0) -> list[int]:
    """The rank bound written out with numpy: per stage i, rank of [1, h a_m1..h a_m,i-1] (m > i) and [1, h b_1..]."""
    t = get_tableau(name).pruned()
    _, A, b = t.as_float()
    s = t.stages
    out = []
    for i in range(s):
        rows = [np.concatenate([[1.0], h * A[m, :i]]) for m in range(i + 1, s)] + [np.concatenate([[1.0], h * b[:i]])]
        out.append(int(np.linalg.matrix_rank(np.array(rows), tol=1e-9)))
    return out


def test_rank_bound_rk4_and_verner():
    # classic RK4 needs y_n and the running output (2); Verner 8(9) needs at most 5 of its 14 evaluations' span
    assert register_ranks(get_tableau("rk4")) == (1, 2, 2, 1)
    verner = get_tableau("verner89").pruned()
    assert register_ranks(verner) == (1, 2, 2, 3, 3, 3, 3, 4, 5, 5, 4, 3, 2, 1)
    assert max(accumulate_program(verner).live_during()) == 10  # keeping each k_j until its last use


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("h", [1, Fraction(1, 3)])
def test_rank_bound_matches_numpy(name, h):
    assert list(register_ranks(get_tableau(name).pruned(), h)) == numpy_ranks(name, float(h))


@pytest.mark.parametrize("name", SCHEMES)
def test_register_program_holds_exactly_the_rank_bound(name):
    t = get_tableau(name).pruned()
    program = register_program(t)
    ranks = register_ranks(t)
    assert program.live_during() == ranks  # registers alive across each F: a basis of what is still needed
    assert program.peak() <= max(ranks) + 2  # between F's: the registers, the new k and one temporary


@pytest.mark.parametrize("name", SCHEMES)
def test_programs_compute_the_tableau_step(name):
    """Each F's input is y_n + h sum a_ij k_j and the output y_n + h sum b_i k_i, coefficient for coefficient."""
    t = get_tableau(name).pruned()
    _, A, b = t.as_float()
    h = 0.37
    for program in (register_program(t, h), accumulate_program(t, h)):
        inputs = [program.vectors[op.args[0]] for op in program.ops if op.kind == "eval"]
        assert len(inputs) == t.stages
        for i, v in enumerate(inputs):
            expected = np.concatenate([[1.0], h * A[i, :i], np.zeros(t.stages - i)])
            np.testing.assert_allclose(np.array(v, dtype=float), expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.array(program.vectors[program.output], dtype=float),
                                   np.concatenate([[1.0], h * b]), rtol=0, atol=1e-12)


def test_exact_tableaux_give_exact_programs():
    program = register_program(get_tableau("rk4-38"))
    assert all(isinstance(x, Fraction) for v in program.vectors.values() for x in v)
    assert program.vectors[program.output] == (1, Fraction(1, 8), Fraction(3, 8), Fraction(3, 8), Fraction(1, 8))


@pytest.mark.parametrize("name, extra", [("rk4", 1), ("rk4-38", 0), ("dopri5", 1), ("verner89", 2)])
def test_extra_axpys(name, extra):
    # the price of fewer registers: a few more passes of x + alpha k per step
    t = get_tableau(name).pruned()
    assert register_program(t).axpys - accumulate_program(t).axpys == extra
