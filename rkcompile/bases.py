"""Basis functions of theta(t) on a stage's depth interval: piecewise constant, FEM hats, Legendre polynomials.

ContinuousNet (Queiruga et al. 2020) writes the weights of a stage as theta(t) = sum_beta phi_beta(t) theta_beta.
Here t is scaled to s = t / T in [0, 1]. A family knows its functions' values at s (exact when s is a Fraction),
its cells (the intervals on which every function is one polynomial, for exact Gauss–Legendre quadrature), its
polynomial degree on a cell, and an exact refinement. Families are registered in `BASES` under the name the spec's
`functions:` field takes.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from rkcompile.registry import Registry

__all__ = ["BASES", "Family", "Constant", "Linear", "Legendre", "gram", "cross", "projection", "quadrature", "MAX_DEGREE"]

BASES: Registry[Family] = Registry("basis family")

#: The highest Legendre degree accepted (beyond it float64 values of P_d lose digits near s = 0 and 1).
MAX_DEGREE = 16


class Family:
    """A family of basis functions on s in [0, 1]; `size` is the number of coefficient tensors."""

    name: str = ""
    minimum: int = 1  # the fewest functions the family makes sense with

    def values(self, s: Fraction | float, size: int, open_left: bool = False) -> list[tuple[int, Fraction | float]]:
        """The non-zero (index, phi_index(s)) pairs; `open_left`: s is a stage time with c > 0 (see Constant)."""
        raise NotImplementedError

    def cells(self, size: int) -> list[Fraction]:
        """Breakpoints 0 = x_0 < ... < x_K = 1 between which every function is one polynomial."""
        return [Fraction(0), Fraction(1)]

    def degree(self, size: int) -> int:
        """The polynomial degree of the functions on one cell."""
        raise NotImplementedError

    def refined(self, size: int, factor: int) -> int:
        """The size after exact refinement by `factor`."""
        raise NotImplementedError

    def refinement(self, size: int, factor: int) -> list[list[Fraction]]:
        """R with new coefficient q = sum_p R[q][p] old coefficient p and the same theta(t) (exact rationals)."""
        raise NotImplementedError

    def matrix(self, size: int, points: np.ndarray) -> np.ndarray:
        """phi_beta(points) as a (len(points), size) float64 array."""
        out = np.zeros((len(points), size))
        for row, s in enumerate(points):
            for beta, phi in self.values(float(s), size):
                out[row, beta] = float(phi)
        return out


class Constant(Family):
    """M pieces, piece p the indicator of [p/M, (p+1)/M) (ContinuousNet's piecewise-constant theta(t))."""

    name = "constant"

    def values(self, s, size, open_left=False):
        """The one piece holding s; a stage time on a boundary belongs to the left piece (ContinuousNet's open set)."""
        x = s * size
        p = math.floor(x)
        if open_left and x == p:
            p -= 1
        return [(min(max(p, 0), size - 1), 1)]

    def cells(self, size):
        """The piece boundaries p / M."""
        return [Fraction(p, size) for p in range(size + 1)]

    def degree(self, size):
        """Constant on each piece."""
        return 0

    def refined(self, size, factor):
        """Each piece split into `factor` copies."""
        return size * factor

    def refinement(self, size, factor):
        """Child piece q copies parent piece q // factor."""
        return [[Fraction(int(q // factor == p)) for p in range(size)] for q in range(size * factor)]


class Linear(Family):
    """M nodes s_k = k/(M-1), phi_k the hat function of node k: theta(t) continuous, linear on M-1 elements."""

    name = "linear"
    minimum = 2

    def values(self, s, size, open_left=False):
        """The two hats overlapping s (one when s is a node)."""
        x = s * (size - 1)
        k = min(math.floor(x), size - 2)
        w = x - k
        return [(beta, phi) for beta, phi in ((k, 1 - w), (k + 1, w)) if phi != 0]

    def cells(self, size):
        """The element boundaries k / (M-1)."""
        return [Fraction(k, size - 1) for k in range(size)]

    def degree(self, size):
        """Linear on each element."""
        return 1

    def refined(self, size, factor):
        """`factor - 1` nodes inserted in every element (midpoint insertion for factor 2): (M-1) * factor + 1."""
        return (size - 1) * factor + 1

    def refinement(self, size, factor):
        """A new node takes theta at its position: the old hats' values there (exact, theta is linear between)."""
        new = self.refined(size, factor)
        rows = []
        for q in range(new):
            row = [Fraction(0)] * size
            for p, phi in self.values(Fraction(q, new - 1), size):
                row[p] = Fraction(phi)
            rows.append(row)
        return rows


class Legendre(Family):
    """Legendre polynomials P_0 ... P_d of 2s - 1 on [0, 1]: d + 1 coefficient tensors, theta(t) one polynomial."""

    name = "legendre"
    minimum = 1

    def values(self, s, size, open_left=False):
        """P_j(2s - 1) by the three-term recurrence (Bonnet); exact for rational s."""
        x = 2 * s - 1
        out = [1, x]
        for j in range(2, size):
            out.append(((2 * j - 1) * x * out[-1] - (j - 1) * out[-2]) / j)
        return [(j, v) for j, v in enumerate(out[:size]) if v != 0]

    def degree(self, size):
        """Degree d = size - 1."""
        return size - 1

    def refined(self, size, factor):
        """Degree elevation: size * factor coefficients, the new ones zero."""
        return size * factor

    def refinement(self, size, factor):
        """The old coefficients kept, the higher-degree ones zero."""
        return [[Fraction(int(q == p)) for p in range(size)] for q in range(size * factor)]


for _family in (Constant(), Linear(), Legendre()):
    BASES.register(_family.name, _family)


def quadrature(families: list[tuple[Family, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre points and weights on [0, 1], per cell of the union of the families' cells, exact for
    products of any two of their functions (n points integrate degree 2n - 1 exactly)."""
    breaks = sorted({x for family, size in families for x in family.cells(size)})
    degree = sum(sorted(family.degree(size) for family, size in families)[-2:])
    n = max(1, math.ceil((degree + 1) / 2))
    nodes, weights = np.polynomial.legendre.leggauss(n)
    points, out = [], []
    for lo, hi in zip(breaks[:-1], breaks[1:]):
        a, b = float(lo), float(hi)
        points.append(a + (b - a) * (nodes + 1) / 2)
        out.append(weights * (b - a) / 2)
    return np.concatenate(points), np.concatenate(out)


def projection(new: Family, new_size: int, old: Family, old_size: int) -> np.ndarray:
    """The L2-optimal coefficients on `new` of a theta(t) given on `old`: P = G_new^-1 C(new, old), float64."""
    return np.linalg.solve(gram(new, new_size), cross(new, new_size, old, old_size))


def gram(family: Family, size: int) -> np.ndarray:
    """The mass matrix G_ab = integral_0^1 phi_a phi_b ds (exact quadrature)."""
    return cross(family, size, family, size)


def cross(a: Family, size_a: int, b: Family, size_b: int) -> np.ndarray:
    """C_ij = integral_0^1 phi^a_i phi^b_j ds (exact quadrature over both families' cells)."""
    points, weights = quadrature([(a, size_a), (b, size_b)])
    return a.matrix(size_a, points).T @ (weights[:, None] * b.matrix(size_b, points))
