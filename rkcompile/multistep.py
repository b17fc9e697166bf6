"""Linear multistep methods: coefficients (α, β), their order, zero-stability, and the built-in library.

An explicit k-step method for y^(q) = F(y) (q = 1: first-order ODEs; q = 2: y'' = F, as second-order nets) reads

    y_{n+1} = Σ_{j<k} α_j y_{n−j} + h^q Σ_{j<k} β_j f_{n−j},        f_m = F(y_m, t_m)

Its order comes from the multistep order conditions C_m = 0 (exact arithmetic for rational coefficients), its
zero-stability from the root condition on ρ(ζ) = ζ^k − Σ_j α_j ζ^{k−1−j} (Dahlquist): every root in the closed unit
disc, those on the circle of multiplicity at most q. Learnable schemes are affine in one coefficient θ per step
(α = α⁰ + θ α¹, β = β⁰ + θ β¹): LM-ResNet's k_n (Lu et al. 2018) and a learnable momentum γ (Sander et al. 2021).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from rkcompile.errors import TableauError
from rkcompile.exact import format_coefficient, parse_coefficient

__all__ = ["LinearMultistep", "MULTISTEP", "get_multistep", "list_multistep", "momentum", "multistep_origin",
           "register_multistep", "MAX_ORDER"]

#: Orders are searched up to this bound (the order conditions of a k-step method stop at 2k).
MAX_ORDER = 20
_TOL = 1e-9  # for float coefficients and for numerical roots


@dataclass(frozen=True)
class LinearMultistep:
    """An explicit linear multistep method, validated on construction: consistent and zero-stable at θ = `theta`."""

    name: str
    alpha: tuple  # α_0 … α_{k−1} (Fractions when rational)
    beta: tuple  # β_0 … β_{k−1}
    derivative: int = 1  # q: the method integrates y^(q) = F
    source: str = ""
    startup: str | None = None  # default start-up RK method (a tableau name), or "rest" (y_{−j} = y_0)
    learn: str | None = None  # the name of the learnable per-step coefficient θ (e.g. "k", "gamma")
    alpha1: tuple = ()  # α¹, β¹: the parts multiplied by θ
    beta1: tuple = ()
    theta: Fraction | float = 0  # θ at which the facts (order, stability) are stated; the init of a fixed scheme
    init: str = ""  # how θ is initialised, in words
    init_uniform: tuple = ()  # (low, high): θ drawn uniformly per step; empty: θ starts at `theta`
    note: str = ""
    _order: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        k = len(self.alpha)
        if k == 0 or len(self.beta) != k:
            raise TableauError(f"multistep method {self.name!r}: alpha and beta need the same positive length "
                               f"(one per step of history), found {len(self.alpha)} and {len(self.beta)}")
        if self.derivative not in (1, 2):
            raise TableauError(f"multistep method {self.name!r}: derivative must be 1 (y' = F) or 2 (y'' = F), "
                               f"found {self.derivative!r}")
        alpha, beta = self.at(self.theta)
        order = _order(alpha, beta, self.derivative)
        if order < 1:
            residual = _conditions(alpha, beta, self.derivative, self.derivative + 1)
            m = next(i for i, c in enumerate(residual) if not _zero(c))
            what = "Σα = 1 (C_0 = 0)" if m == 0 else f"the order condition C_{m} = 0 (ρ'(1) = σ(1))"
            raise TableauError(f"multistep method {self.name!r} is not consistent: it violates {what}; "
                               f"C_{m} = {_show(residual[m])}")
        bad = _root_condition(alpha, self.derivative)
        if bad is not None:
            raise TableauError(f"multistep method {self.name!r} is not zero-stable: {bad}")
        object.__setattr__(self, "_order", order)

    @classmethod
    def from_text(cls, name: str, alpha: Sequence[object], beta: Sequence[object], **kw) -> LinearMultistep:
        """Build from numbers or exact strings such as "23/12" (as inline specs write them)."""
        return cls(name, tuple(parse_coefficient(a) for a in alpha), tuple(parse_coefficient(b) for b in beta), **kw)

    def at(self, theta) -> tuple[tuple, tuple]:
        """(α, β) with the learnable coefficient set to θ."""
        if not self.learn:
            return self.alpha, self.beta
        return (tuple(a + theta * d for a, d in zip(self.alpha, self.alpha1)),
                tuple(b + theta * d for b, d in zip(self.beta, self.beta1)))

    @property
    def steps(self) -> int:
        """k: how many past values the method reads (1 for a one-step method)."""
        return len(self.alpha)

    @property
    def order(self) -> int:
        """Largest p such that the order conditions C_0 … C_{p+q−1} hold (at θ = `theta`)."""
        return self._order

    @property
    def history(self) -> tuple[int, int]:
        """(y lags, f lags) the method carries from step to step: y_{n−1}…y_{n−a}, f_{n−1}…f_{n−b}."""
        ys = [j for j in range(self.steps) if self.alpha[j] != 0 or (self.learn and self.alpha1[j] != 0)]
        fs = [j for j in range(self.steps) if self.beta[j] != 0 or (self.learn and self.beta1[j] != 0)]
        return max(ys, default=0), max(fs, default=0)

    def roots(self, theta=None) -> list[complex]:
        """The roots of ρ(ζ) = ζ^k − Σ α_j ζ^{k−1−j}."""
        alpha = self.at(self.theta if theta is None else theta)[0]
        return [complex(r) for r in np.roots([1.0, *(-float(a) for a in alpha)])]

    def stability(self) -> str:
        """The stability facts in words: zero-stable, strongly or weakly (extra roots on the unit circle)."""
        on_circle = [r for r in self.roots() if abs(abs(r) - 1) < 1e-7 and abs(r - 1) > 1e-7]
        if self.learn and self.name == "lm-resnet":
            return "zero-stable for −1 < k_n ≤ 1 (roots 1, −k_n)"
        if self.name == "momentum" and self.learn:
            return "zero-stable for −1 < γ < 1 (roots 1, γ)"
        if self.derivative == 2:
            return "zero-stable for y'' = F (double root 1)"
        if on_circle:
            return "weakly stable (roots " + ", ".join(_show_root(r) for r in [1, *on_circle]) + ")"
        return "strongly stable" if self.steps > 1 else "zero-stable"

    @property
    def reversible(self) -> bool:
        """True when y_{n−1} follows from y_n and y_{n+1} (a two-step method with α_1 ≠ 0 and β_1 = 0)."""
        alpha, beta = self.at(self.theta)
        return bool(self.steps == 2 and beta[1] == 0 and self.beta1[1:2] in ((), (0,)) and
                    (alpha[1] != 0 or (self.learn and self.alpha1[1] != 0)))

    def inverse_step(self, y_n, y_next, f_n, h, theta=None):
        """The inverse step y_{n−1} = (y_{n+1} − α_0 y_n − h^q β_0 f_n) / α_1 of a reversible two-step method.

        Leapfrog: y_{n−1} = y_{n+1} − 2h F(y_n); second order: y_{n−1} = 2 y_n − y_{n+1} + h² F(y_n); momentum
        (Sander et al. 2021): y_{n−1} = ((1 + γ) y_n + h (1 − γ) F(y_n) − y_{n+1}) / γ. Works on numbers and tensors;
        `theta` is the step's learnable coefficient (k_n, γ_n) where there is one.
        """
        if not self.reversible:
            raise TableauError(f"multistep method {self.name!r} has no inverse step: it needs two steps of history, "
                               "α_1 ≠ 0 and β_1 = 0")
        alpha, beta = self.at(self.theta if theta is None else theta)
        hq = h ** self.derivative
        return (y_next - float(alpha[0]) * y_n - float(hq * beta[0]) * f_n) / float(alpha[1])

    def describe(self) -> str:
        """The method as exact coefficients, with its order, history and stability facts."""
        q = "y'' = F" if self.derivative == 2 else "y' = F"
        lines = [f"{self.name}: linear {self.steps}-step method for {q}, order {self.order}, {self.stability()}",
                 "  alpha: " + ", ".join(map(format_coefficient, self.alpha)),
                 "  beta:  " + ", ".join(map(format_coefficient, self.beta))]
        if self.learn:
            lines.append(f"  + {self.learn}·alpha1: " + ", ".join(map(format_coefficient, self.alpha1))
                         + f"; {self.learn}·beta1: " + ", ".join(map(format_coefficient, self.beta1))
                         + f" ({self.learn} learnable per step, {self.init})")
        lines.append(f"  start-up: {self.startup or '-'}" + (f"; {self.note}" if self.note else ""))
        if self.source:
            lines.append(f"  source: {self.source}")
        return "\n".join(lines)


# ---------------------------------------------------------------- order conditions and the root condition
def _conditions(alpha, beta, q: int, count: int) -> list:
    """C_0 … C_{count−1}: the Taylor coefficients of the local residual (of h^m y^(m), divided by nothing)."""
    out = []
    for m in range(count):
        c = Fraction(1, math.factorial(m)) - sum(a * _power(-j, m) for j, a in enumerate(alpha)) / math.factorial(m)
        if m >= q:
            c -= sum(b * _power(-j, m - q) for j, b in enumerate(beta)) / math.factorial(m - q)
        out.append(c)
    return out


def _order(alpha, beta, q: int) -> int:
    residual = _conditions(alpha, beta, q, MAX_ORDER + q + 1)
    m = next((i for i, c in enumerate(residual) if not _zero(c)), len(residual))
    return max(m - q, 0)


def _power(x: int, m: int) -> int:
    return 1 if m == 0 else x ** m


def _zero(c) -> bool:
    return c == 0 if isinstance(c, Fraction) else abs(c) < _TOL


def _root_condition(alpha, q: int) -> str | None:
    """None when ρ satisfies the root condition, else the offending root in words."""
    exact = all(isinstance(a, Fraction) for a in alpha)
    rho = [Fraction(1), *(-a for a in alpha)] if exact else [1.0, *(-float(a) for a in alpha)]
    roots = _distinct_roots(rho) if exact else [complex(r) for r in np.roots(rho)]
    for r in sorted(roots, key=lambda r: -abs(r)):
        if abs(r) > 1 + _TOL:
            return f"ρ(ζ) = {_poly(rho)} has the root ζ = {_show_root(r)} outside the unit circle (root condition)"
    for r in _repeated_roots(rho, roots, q, exact):
        if abs(abs(r) - 1) <= 1e-6:
            times = "double" if q == 1 else "triple"
            return (f"ρ(ζ) = {_poly(rho)} has the {times} root ζ = {_show_root(r)} on the unit circle (root condition: "
                    f"roots of modulus 1 must have multiplicity at most {q})")
    return None


def _distinct_roots(p: list) -> list[complex]:
    """The roots of a rational polynomial, each once: those of its square-free part p / gcd(p, p′) (exact)."""
    g = _gcd(p, _derivative(p))
    free = _quotient(p, g) if len(g) > 1 else p
    return [complex(r) for r in np.roots([float(c) for c in free])] if len(free) > 1 else []


def _repeated_roots(rho, roots: list[complex], q: int, exact: bool) -> list[complex]:
    """Roots of multiplicity > q: exactly, as the roots of gcd(ρ, ρ', …, ρ^(q)), for rational coefficients."""
    if exact:
        g, d = rho, rho
        for _ in range(q):
            d = _derivative(d)
            g = _gcd(g, d)
        return _distinct_roots(g) if len(g) > 1 else []
    return [r for r in roots if sum(abs(s - r) < 1e-5 for s in roots) > q]


def _quotient(p: list, d: list) -> list:
    """p / d for an exact divisor d (Fraction coefficients, highest degree first)."""
    p, out = list(p), []
    while len(p) >= len(d):
        f = p[0] / d[0]
        out.append(f)
        for i in range(len(d)):
            p[i] -= f * d[i]
        p.pop(0)
    return out


def _derivative(p: list) -> list:
    n = len(p) - 1
    return [c * (n - i) for i, c in enumerate(p[:-1])] or [Fraction(0)]


def _gcd(p: list, r: list) -> list:
    """Monic gcd of two polynomials with Fraction coefficients (highest degree first)."""
    p, r = _trim(p), _trim(r)
    while len(r) > 1 or (r and r[0] != 0):
        if not r or all(c == 0 for c in r):
            break
        p, r = r, _trim(_remainder(p, r))
    return [c / p[0] for c in p]


def _remainder(p: list, d: list) -> list:
    p = list(p)
    while len(p) >= len(d) and any(p):
        f = p[0] / d[0]
        for i in range(len(d)):
            p[i] -= f * d[i]
        p.pop(0)
    return p or [Fraction(0)]


def _trim(p: list) -> list:
    i = 0
    while i < len(p) - 1 and p[i] == 0:
        i += 1
    return p[i:]


def _poly(rho) -> str:
    k = len(rho) - 1
    parts = []
    for i, c in enumerate(rho):
        if c == 0:
            continue
        e = k - i
        mono = "" if e == 0 else ("ζ" if e == 1 else f"ζ^{e}")
        mag = abs(c)
        coef = "" if (mag == 1 and e) else format_coefficient(Fraction(mag) if isinstance(c, Fraction) else float(mag))
        sign = "−" if c < 0 else "+"
        parts.append((sign, f"{coef}{mono}"))
    text = "".join(f" {s} {t}" for s, t in parts).strip()
    return text[2:] if text.startswith("+ ") else "−" + text[2:]


def _show(c) -> str:
    return format_coefficient(c) if isinstance(c, Fraction) else f"{float(c):.6g}"


def _show_root(r: complex) -> str:
    r = complex(r)
    re_ = 0.0 if abs(r.real) < 1e-9 else r.real
    if abs(r.imag) < 1e-9:
        return f"{re_:.6g}"
    return f"{re_:.6g}{'+' if r.imag >= 0 else '−'}{abs(r.imag):.6g}i"


# ---------------------------------------------------------------- the library
def _f(*xs) -> tuple:
    return tuple(Fraction(x) for x in xs)


def momentum(gamma=Fraction(9, 10), learn: bool = False) -> LinearMultistep:
    """Momentum ResNets (Sander et al. 2021): v_{n+1} = γ v_n + (1 − γ) F(y_n), y_{n+1} = y_n + h v_{n+1}.

    Written on y alone (v_n = (y_n − y_{n−1}) / h): y_{n+1} = (1 + γ) y_n − γ y_{n−1} + h (1 − γ) f_n, a consistent
    two-step method of order 1 (roots 1 and γ); v_0 = 0 is y_{−1} = y_0. With `learn`, γ is a parameter per step.
    """
    g = parse_coefficient(gamma)
    if learn:
        return LinearMultistep("momentum", _f(1, 0), _f(1, 0), source=_SANDER, startup="rest", learn="gamma",
                               alpha1=_f(1, -1), beta1=_f(-1, 0), theta=g, init=f"γ_n = {format_coefficient(g)}",
                               note="v_0 = 0 (y_{−1} = y_0)")
    return LinearMultistep("momentum", (1 + g, -g), (1 - g, Fraction(0)), source=_SANDER, startup="rest",
                           theta=g, note=f"γ = {format_coefficient(g)}; v_0 = 0 (y_{{−1}} = y_0)")


_SANDER = "Sander et al. (2021), Momentum Residual Neural Networks, ICML"
_LU = "Lu et al. (2018), Beyond Finite Layer Neural Networks, ICML (LM-ResNet)"
_CHANG = "Chang et al. (2018), Reversible Architectures for Arbitrarily Deep Residual Neural Networks, AAAI"
_AB = "Bashforth & Adams (1883)"

MULTISTEP: dict[str, LinearMultistep] = {m.name: m for m in (
    LinearMultistep("ab2", _f(1, 0), (Fraction(3, 2), Fraction(-1, 2)), source=_AB, startup="midpoint"),
    LinearMultistep("ab3", _f(1, 0, 0), tuple(Fraction(x, 12) for x in (23, -16, 5)), source=_AB, startup="kutta3"),
    LinearMultistep("ab4", _f(1, 0, 0, 0), tuple(Fraction(x, 24) for x in (55, -59, 37, -9)), source=_AB,
                    startup="rk4"),
    LinearMultistep("leapfrog", _f(0, 1), _f(2, 0), source=_CHANG + " (leapfrog: the explicit two-step midpoint rule)", startup="midpoint"),
    LinearMultistep("lm-resnet", _f(1, 0), _f(1, 0), source=_LU, startup="euler", learn="k", alpha1=_f(-1, 1),
                    beta1=_f(0, 0), theta=0, init="k_n ~ U(−0.1, 0) as Lu et al. 2018", init_uniform=(-0.1, 0.0),
                    note="consistent with (1 + k_n) y' = F (Lu et al.'s modified equation)"),
    momentum(),
    LinearMultistep("second-order", _f(2, -1), _f(1, 0), derivative=2, startup="rest",
                    source=_CHANG + " (Störmer–Verlet for y'' = F: second-order CNNs, Hamiltonian nets)",
                    note="y_{−1} = y_0 (zero initial velocity)"),
)}


_ORIGINS: dict[str, str] = dict.fromkeys(MULTISTEP, "built in")


def register_multistep(method: LinearMultistep) -> LinearMultistep:
    """Add a multistep method under its (lower-cased) name; a name can be registered once, by one integrator family."""
    from rkcompile import plugins
    from rkcompile.tableaux import tableau_origins

    if not isinstance(method, LinearMultistep):
        raise TableauError(f"register_multistep expects a LinearMultistep, found {type(method).__name__}")
    key, origin, tableaux = method.name.strip().lower(), plugins.origin_of(), tableau_origins()
    old = _ORIGINS.get(key) or (f"a tableau, {tableaux[key]}" if key in tableaux else None)
    if old is not None:
        raise plugins.clash("integrator", key, old, origin) or TableauError(
            f"an integrator named {key!r} is already registered ({old})")
    MULTISTEP[key], _ORIGINS[key] = method, origin
    plugins.note(lambda: (MULTISTEP.pop(key), _ORIGINS.pop(key)))
    return method


def list_multistep() -> list[str]:
    """Names of the registered multistep and momentum schemes (built in first, then in registration order)."""
    from rkcompile import plugins

    plugins.discover()
    return list(MULTISTEP)


def multistep_origin(name: str) -> str:
    """Where the multistep method called `name` was registered from ("built in", a module path or a plugin)."""
    return _ORIGINS[get_multistep(name).name.strip().lower()]


def get_multistep(name: str) -> LinearMultistep:
    """A registered scheme by name (case-insensitive)."""
    key = name.strip().lower()
    if key not in list_multistep():
        from rkcompile.errors import did_you_mean

        raise TableauError(f"unknown multistep method {name!r}{did_you_mean(key, list(MULTISTEP))}; expected one of "
                           f"{', '.join(MULTISTEP)}")
    return MULTISTEP[key]
