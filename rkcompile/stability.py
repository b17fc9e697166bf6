"""Linear stability of a method: where y' = λy stays bounded, its order, and its principal error coefficient.

Applied to y' = λy with z = hλ, one step of an explicit Runge–Kutta method is y_{n+1} = R(z) y_n with the
stability polynomial R(z) = 1 + Σ_{k=1}^{s} (bᵀ A^{k-1} 1) z^k (Hairer & Wanner, "Solving ODEs II", Sec. IV.2),
computed here in exact fractions when the tableau is rational. A linear multistep method
Σ α_j y_{n+j} = h Σ β_j f_{n+j} gives the characteristic polynomial ρ(ζ) − zσ(ζ) instead; its region is where
every root has modulus ≤ 1, its boundary locus z(θ) = ρ(e^{iθ}) / σ(e^{iθ}) (Hairer, Nørsett & Wanner,
"Solving ODEs I", Sec. III.2-3). Both kinds give the same interface (`StabilityMethod`), so a region, its
real-axis extent and a plot are computed the same way for each.

The principal error coefficient of an RK method of order p is ‖τ^{(p+1)}‖₂ with τ_t = (bᵀΦ(t) − 1/γ(t)) / σ(t)
over the rooted trees t with p+1 vertices (Dormand & Prince 1980: 3.99e-4 for their 5(4) pair); for a
multistep method it is C_{p+1} / σ(1).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np

from rkcompile.exact import Coefficient, format_coefficient
from rkcompile.tableau import Tableau
from rkcompile.trees import MAX_ORDER, rooted_trees

__all__ = ["StabilityMethod", "RungeKuttaStability", "MultistepStability", "stability_polynomial",
           "principal_error", "runge_kutta", "real_extent"]


class StabilityMethod(Protocol):
    """What a method supplies to have its stability region computed and plotted."""

    # read-only properties, so that frozen dataclasses and properties satisfy the protocol
    @property
    def name(self) -> str:
        """The method's name in legends and tables."""

    @property
    def order(self) -> int:
        """The method's order of accuracy."""

    @property
    def error_coefficient(self) -> float:
        """The size of the leading local error term."""

    def amplification(self, z: np.ndarray) -> np.ndarray:
        """The growth factor per step at z = hλ (the region is where it is ≤ 1)."""

    def boundary_locus(self, points: int = 720) -> np.ndarray:
        """Points z where the growth factor equals 1 (the boundary is among them)."""


@dataclass(frozen=True)
class RungeKuttaStability:
    """An RK method's stability polynomial R(z) = Σ coefficients[k] z^k, order and principal error coefficient."""

    name: str
    coefficients: tuple[Coefficient, ...]
    order: int
    error_coefficient: float

    def amplification(self, z: np.ndarray) -> np.ndarray:
        """|R(z)|."""
        return np.abs(np.polyval([complex(float(c)) for c in reversed(self.coefficients)], z))

    def boundary_locus(self, points: int = 720) -> np.ndarray:
        """Every z with R(z) = e^{iθ} for θ on a grid: roots of R(z) − e^{iθ}, a polynomial of degree s."""
        poly = np.array([float(c) for c in reversed(self.coefficients)], dtype=complex)
        out = []
        for theta in np.linspace(0, 2 * np.pi, points, endpoint=False):
            shifted = poly.copy()
            shifted[-1] -= np.exp(1j * theta)
            out.append(np.roots(shifted))
        return np.concatenate(out)

    def text(self) -> str:
        """R(z) written out, exact coefficients as fractions: '1 + z + 1/2 z^2 + ...'."""
        terms = []
        for k, c in enumerate(self.coefficients):
            if c == 0:
                continue
            exact = isinstance(c, Fraction) and c.denominator <= 10**8  # not published decimal approximations
            value = format_coefficient(c) if exact else f"{float(c):.6g}"
            power = "" if k == 0 else ("z" if k == 1 else f"z^{k}")
            terms.append(value if k == 0 else (power if value == "1" else f"{value} {power}"))
        return " + ".join(terms).replace("+ -", "- ")


@dataclass(frozen=True)
class MultistepStability:
    """A linear multistep method Σ_j α_j y_{n+j} = h Σ_j β_j f_{n+j} (j = 0..k; α_k = 1)."""

    name: str
    alpha: tuple[Fraction, ...]
    beta: tuple[Fraction, ...]

    @property
    def _conditions(self) -> list[Fraction]:
        """C_0, C_1, ...: C_q = Σ_j (j^q α_j / q! − j^{q−1} β_j / (q−1)!)."""
        out = [sum(self.alpha, Fraction(0))]
        for q in range(1, MAX_ORDER + 2):
            out.append(sum((Fraction(j**q) * a / math.factorial(q) for j, a in enumerate(self.alpha)), Fraction(0))
                       - sum(Fraction(j ** (q - 1)) * b / math.factorial(q - 1) for j, b in enumerate(self.beta)))
        return out

    @property
    def order(self) -> int:
        """Largest p with C_0 = ... = C_p = 0."""
        c = self._conditions
        return next(q for q in range(len(c)) if c[q] != 0) - 1

    @property
    def error_coefficient(self) -> float:
        """The error constant C_{p+1} / σ(1)."""
        return float(self._conditions[self.order + 1] / sum(self.beta, Fraction(0)))

    def amplification(self, z: np.ndarray) -> np.ndarray:
        """The largest root modulus of ρ(ζ) − zσ(ζ) at each z."""
        z = np.atleast_1d(np.asarray(z, dtype=complex))
        rho = np.array([float(a) for a in reversed(self.alpha)], dtype=complex)
        sigma = np.array([float(b) for b in reversed(self.beta)], dtype=complex)
        out = np.array([np.max(np.abs(np.roots(rho - w * sigma))) for w in z.ravel()])
        return out.reshape(z.shape)

    def boundary_locus(self, points: int = 720) -> np.ndarray:
        """z(θ) = ρ(e^{iθ}) / σ(e^{iθ})."""
        zeta = np.exp(1j * np.linspace(0, 2 * np.pi, points, endpoint=False))
        rho = np.polyval([float(a) for a in reversed(self.alpha)], zeta)
        sigma = np.polyval([float(b) for b in reversed(self.beta)], zeta)
        return rho[np.abs(sigma) > 1e-12] / sigma[np.abs(sigma) > 1e-12]


def stability_polynomial(tableau: Tableau) -> tuple[Coefficient, ...]:
    """(1, bᵀ1, bᵀA1, ..., bᵀA^{s-1}1): R's coefficients, exact Fractions when the tableau is rational."""
    s = tableau.stages
    zero = Fraction(0) if tableau.is_rational else 0.0
    v = [Fraction(1) if tableau.is_rational else 1.0] * s  # A^{k-1} 1
    out: list[Coefficient] = [Fraction(1)]
    for _ in range(s):
        out.append(sum((b * x for b, x in zip(tableau.b, v, strict=True)), zero))
        v = [sum((a * x for a, x in zip(row, v, strict=True)), zero) for row in tableau.A]
    while len(out) > 1 and out[-1] == 0:
        out.pop()
    return tuple(out)


def principal_error(tableau: Tableau) -> float:
    """‖τ^{(p+1)}‖₂ over the rooted trees with p+1 vertices (exact sums when the tableau is rational)."""
    p = tableau.order
    if p >= MAX_ORDER:
        raise ValueError(f"tableau {tableau.name!r}: order {p} is the highest checked; no error coefficient")
    trees = rooted_trees()
    one = Fraction(1) if tableau.is_rational else 1.0
    phi: dict[int, list] = {}
    sigma: dict[int, int] = {}

    def weights(k: int) -> list:
        if k not in phi:
            v = [one] * tableau.stages
            for child in trees[k].children:
                w = weights(child)
                aw = [sum((a * x for a, x in zip(row, w, strict=True)), one * 0) for row in tableau.A]
                v = [x * y for x, y in zip(v, aw, strict=True)]
            phi[k] = v
        return phi[k]

    def symmetry(k: int) -> int:
        if k not in sigma:
            sigma[k] = math.prod(symmetry(c) ** m * math.factorial(m) for c, m in Counter(trees[k].children).items())
        return sigma[k]

    total = 0.0
    for k, t in enumerate(trees):
        if t.order == p + 1:
            residual = sum((b * x for b, x in zip(tableau.b, weights(k), strict=True)), one * 0) - one / t.gamma
            total += float(residual / symmetry(k)) ** 2
    return math.sqrt(total)


def runge_kutta(tableau: Tableau) -> RungeKuttaStability:
    """The stability data of a tableau (its stages that never reach the output are pruned first)."""
    t = tableau.pruned()
    return RungeKuttaStability(t.name, stability_polynomial(t), t.order, principal_error(t))


def real_extent(method: StabilityMethod, limit: float = 100.0, step: float = 1e-3) -> float:
    """The largest r with [−r, 0] inside the region (growth ≤ 1), to ~1e-12; `limit` if it reaches that far."""
    x = -np.arange(step, limit + step, step)
    grows = method.amplification(x.astype(complex)) > 1 + 1e-12
    if not grows.any():
        return limit
    first = int(np.argmax(grows))
    inside, outside = (0.0 if first == 0 else float(-x[first - 1])), float(-x[first])
    for _ in range(60):
        mid = (inside + outside) / 2
        if method.amplification(np.array([-mid], dtype=complex))[0] > 1 + 1e-12:
            outside = mid
        else:
            inside = mid
    return inside
