"""Rooted trees and Butcher's order conditions, evaluated with memoised elemental weights.

A Runge-Kutta method has order p when sum_i b_i Phi_i(t) = 1/gamma(t) for every rooted tree t with at most p
vertices (J. C. Butcher, "Numerical Methods for Ordinary Differential Equations", 3rd ed., Wiley 2016, Sec. 31;
Hairer, Norsett & Wanner, "Solving Ordinary Differential Equations I", Sec. II.2). With t = [t_1, ..., t_m]
(a root joined to subtrees t_k), Phi(t) is the elementwise product of A @ Phi(t_k), Phi(single vertex) = 1,
and gamma(t) = |t| * prod_k gamma(t_k).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, lru_cache
from typing import cast

import numpy as np

__all__ = ["MAX_ORDER", "ORDER_RTOL", "MAX_EXACT_WORK", "RootedTree", "rooted_trees", "count_trees", "orders", "exact_feasible",
           "exact_work"]

#: Highest order the library checks (719 trees of order 10, 1205 up to it).
MAX_ORDER = 10
#: An order condition holds when |residual| <= ORDER_RTOL * scale (see `orders`).
ORDER_RTOL = 1e-10


@dataclass(frozen=True)
class RootedTree:
    """An unlabelled rooted tree: its vertex count, its root's subtrees (indices into `rooted_trees()`), gamma."""

    order: int
    children: tuple[int, ...]
    gamma: int


@lru_cache(maxsize=1)
def rooted_trees() -> tuple[RootedTree, ...]:
    """All rooted trees with 1..MAX_ORDER vertices, by order; a tree's subtrees always come before it."""
    trees: list[RootedTree] = [RootedTree(1, (), 1)]
    by_order: dict[int, list[int]] = {1: [0]}
    for n in range(2, MAX_ORDER + 1):
        by_order[n] = []
        # A tree of order n is a root plus a multiset of subtrees of total order n - 1; listing each multiset
        # with non-decreasing tree indices produces every tree exactly once.
        for kids in _multisets(n - 1, 0, trees):
            gamma = n * math.prod(trees[k].gamma for k in kids)
            by_order[n].append(len(trees))
            trees.append(RootedTree(n, kids, gamma))
    return tuple(trees)


def _multisets(total: int, first: int, trees: list[RootedTree]) -> list[tuple[int, ...]]:
    """Non-decreasing index tuples of trees (index >= first) whose orders add up to `total`."""
    if total == 0:
        return [()]
    found: list[tuple[int, ...]] = []
    for k in range(first, len(trees)):
        if trees[k].order <= total:
            found.extend((k, *rest) for rest in _multisets(total - trees[k].order, k, trees))
    return found


def count_trees(order: int) -> int:
    """Number of rooted trees with exactly `order` vertices (1, 1, 2, 4, 9, 20, 48, 115, 286, 719)."""
    return sum(1 for t in rooted_trees() if t.order == order)


#: Work bound of the exact check: nonzero entries of A x bits of the common denominator x MAX_ORDER (Prince &
#: Dormand's RK8(7)13M, the largest built-in rational tableau, needs about 1e6); above it the float check decides.
MAX_EXACT_WORK = 3_000_000


def exact_work(A: Sequence[Sequence[Fraction | float]], weights: Sequence[Sequence[Fraction | float]] = ()) -> int | None:
    """The exact check's work estimate for rational A (and weights), or None when some entry is not a Fraction."""
    values = [x for row in (*A, *weights) for x in row]
    fractions = [x for x in values if isinstance(x, Fraction)]
    if len(fractions) != len(values):
        return None
    bits = sum(x.denominator.bit_length() for x in fractions if x != 0)  # bounds the lcm's bits, cheaply
    nonzero = sum(1 for row in A for x in row if x != 0)
    return max(nonzero, 1) * bits * MAX_ORDER


def exact_feasible(A: Sequence[Sequence[Fraction | float]], weights: Sequence[Sequence[Fraction | float]] = ()) -> bool:
    """Whether the order conditions of this tableau are checked in exact integer arithmetic."""
    work = exact_work(A, weights)
    return work is not None and work <= MAX_EXACT_WORK


def orders(A: Sequence[Sequence[Fraction | float]], weights: Sequence[Sequence[Fraction | float]],
           max_order: int = MAX_ORDER) -> list[int]:
    """Order of each weight vector with matrix A: the largest p <= max_order with every condition up to p holding.

    When A and a weight vector are all Fractions the residual sum_i b_i Phi_i(t) - 1/gamma(t) is computed
    exactly (in integers, see `_ExactPhi`), else in float64. Either way a condition holds when |residual| <=
    ORDER_RTOL * scale(t), scale(t) = max(1/gamma(t), sum_i |b_i| Phi_i(t) computed with |A|): the bound that
    float rounding of the coefficients can reach. Exact tableaux meet it with residual 0; published rational
    approximations (Prince & Dormand's RK8(7)13M, good to ~1e-18) and float tableaux meet it within rounding.
    A rational tableau whose exact check would pass MAX_EXACT_WORK is checked in float64 with that tolerance.
    """
    trees = rooted_trees()
    a_float = np.array([[float(x) for x in row] for row in A], dtype=np.float64).reshape(len(A), len(A))
    exact_a = all(isinstance(x, Fraction) for row in A for x in row)
    float_phi = _FloatPhi(a_float)
    # cast: exact_a has checked that every entry of A is a Fraction
    exact_phi = _ExactPhi(cast("Sequence[Sequence[Fraction]]", A)) if exact_a and exact_feasible(A, weights) else None
    result: list[int | None] = [None] * len(weights)
    for p in range(1, max_order + 1):
        for i, b in enumerate(weights):
            if result[i] is not None:
                continue
            exact_b = exact_phi is not None and all(isinstance(x, Fraction) for x in b)
            b_float = np.array([float(x) for x in b], dtype=np.float64)
            for k in _indices_of_order(p):
                t = trees[k]
                phi, abs_phi = float_phi.get(k)
                with np.errstate(all="ignore"):
                    scale = max(1.0 / t.gamma, float(np.abs(b_float) @ abs_phi))
                    # cast: exact_b has checked that every entry of b is a Fraction
                    residual = (exact_phi.residual(k, cast("Sequence[Fraction]", b)) if exact_phi is not None and exact_b
                                else float(b_float @ phi) - 1.0 / t.gamma)
                holds = residual == 0 or (math.isfinite(residual) and abs(residual) <= ORDER_RTOL * scale)
                if not holds:
                    result[i] = p - 1
                    break
        if all(r is not None for r in result):
            break
    return [max_order if r is None else r for r in result]


@cache
def _indices_of_order(p: int) -> tuple[int, ...]:
    """Indices in `rooted_trees()` of the trees with exactly p vertices."""
    return tuple(k for k, t in enumerate(rooted_trees()) if t.order == p)


class _FloatPhi:
    """Memoised float64 elemental weights Phi(t) and the same built from |A| (for the rounding scale)."""

    def __init__(self, A: np.ndarray) -> None:
        self.A, self.abs_A = A, np.abs(A)
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.a_phi: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Phi(t_k), |Phi|(t_k)), computing subtrees first."""
        if k not in self.cache:
            s = self.A.shape[0]
            phi, abs_phi = np.ones(s), np.ones(s)
            with np.errstate(all="ignore"):  # a wild random tableau may overflow: that just fails the check
                for child in rooted_trees()[k].children:
                    if child not in self.a_phi:
                        cp, ca = self.get(child)
                        self.a_phi[child] = (self.A @ cp, self.abs_A @ ca)
                    ap, aa = self.a_phi[child]
                    phi, abs_phi = phi * ap, abs_phi * aa
            self.cache[k] = (phi, abs_phi)
        return self.cache[k]


class _ExactPhi:
    """Memoised exact elemental weights kept as integers: Phi(t) = N(t) / D**(|t| - 1) with D the lcm of A's
    denominators, so each step is an integer matrix-vector product instead of thousands of Fraction gcds."""

    def __init__(self, A: Sequence[Sequence[Fraction]]) -> None:
        self.D = math.lcm(*(x.denominator for row in A for x in row))
        # Sparse rows: most of a tableau's A is zero, and skipping zeros is most of the speed.
        self.rows = [[(j, int(x * self.D)) for j, x in enumerate(row) if x != 0] for row in A]
        self.s = len(A)
        self.cache: dict[int, list[int]] = {}
        self.a_phi: dict[int, list[int]] = {}

    def get(self, k: int) -> list[int]:
        """Integer numerators N(t_k) of Phi(t_k)."""
        if k not in self.cache:
            phi = [1] * self.s
            for child in rooted_trees()[k].children:
                if child not in self.a_phi:
                    cp = self.get(child)
                    self.a_phi[child] = [sum(a * cp[j] for j, a in row) for row in self.rows]
                ap = self.a_phi[child]
                phi = [x * y for x, y in zip(phi, ap, strict=True)]
            self.cache[k] = phi
        return self.cache[k]

    def residual(self, k: int, b: Sequence[Fraction]) -> float:
        """Exact sum_i b_i Phi_i(t_k) - 1/gamma(t_k), rounded to float only at the end."""
        t = rooted_trees()[k]
        db = math.lcm(*(x.denominator for x in b))
        phi = self.get(k)
        den = db * self.D ** (t.order - 1)
        num = t.gamma * sum(int(x * db) * y for x, y in zip(b, phi, strict=True) if x != 0) - den
        # int / int is correctly rounded in Python even for huge operands.
        return num / (t.gamma * den) if num else 0.0
