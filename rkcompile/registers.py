"""Minimal registers for one explicit Runge–Kutta step: the rank bound and a program that meets it.

Write every value of a step as a coefficient vector over (y_n, k_1, …, k_s): stage i's input is
u_i = [1, h a_i1, …, h a_i,i-1] and the output is w = [1, h b_1, …, h b_s]. While F_i runs, what must
survive is the span of the projections onto (y_n, k_1..k_{i-1}) of every later input u_m (m > i) and of w;
its rank is the number of activation-sized registers a step needs besides F's own temporaries (classic
RK4: 1, 2, 2, 1; Verner 8(9): at most 5, where keeping each k_j until its last use holds up to 10).

`register_program` emits a straight-line program over abstract tensors that holds a basis of exactly that
span while each F runs, updating it with axpy steps (x + alpha * k) after each evaluation; values not in
the basis (a stage input, say) are formed as one temporary just before they are used. `accumulate_program`
is the same program for the direct lowering (`rkcompile.lowering`), so the two can be compared before
anything is compiled. Exact arithmetic where the tableau is rational, float64 (tolerance 1e-9) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import combinations
from typing import Any

__all__ = ["LOWERINGS", "LoweringChoice", "Op", "Program", "accumulate_program", "choose_lowering", "register_program",
           "register_ranks", "stage_lowering"]

_TOL = 1e-9


@dataclass(frozen=True)
class Op:
    """One instruction: `eval` (k_i = F_i(args[0])), `axpy` (args[0] + alpha * args[1]) or `scale` (alpha * args[0])."""

    kind: str
    out: int
    args: tuple[int, ...]
    alpha: Fraction | float | None = None
    stage: int | None = None  # eval: the 0-based stage i


@dataclass(frozen=True)
class Program:
    """A step as instructions over tensor ids (0 is y_n), the vector each id holds, and the output's id."""

    ops: tuple[Op, ...]
    vectors: dict[int, tuple]
    output: int

    @property
    def axpys(self) -> int:
        """Number of elementwise combination ops (axpy and scale), each one pass over an activation."""
        return sum(op.kind != "eval" for op in self.ops)

    def live_during(self) -> tuple[int, ...]:
        """Per evaluation, the step tensors that stay alive across it (besides F's input when F consumes it)."""
        last = self._last_use()
        out = []
        for t, op in enumerate(self.ops):
            if op.kind == "eval":
                out.append(sum(1 for x, (a, b) in last.items() if a < t < b))
        return tuple(out)

    def peak(self) -> int:
        """Most step tensors alive at once outside F (inputs and output of each op included)."""
        last = self._last_use()
        return max(sum(1 for a, b in last.values() if a <= t <= b) for t, op in enumerate(self.ops) if op.kind != "eval")

    def _last_use(self) -> dict[int, tuple[int, int]]:
        """id → (index of the op creating it, -1 for y; index of its last use, len(ops) for the output)."""
        span = {0: [-1, -1]}
        for t, op in enumerate(self.ops):
            span[op.out] = [t, t]
            for a in op.args:
                span[a][1] = t
        span[self.output][1] = len(self.ops)
        return {k: (a, b) for k, (a, b) in span.items()}


# ---------------------------------------------------------------- linear algebra over exact or float vectors
def _zero(x, exact: bool) -> bool:
    return x == 0 if exact else abs(x) <= _TOL


def _rank(rows: list[tuple], exact: bool) -> int:
    """Rank by Gaussian elimination (partial pivoting in floats; entries scaled to the largest first)."""
    m = [list(r) for r in rows]
    if not exact:
        m = [[float(x) for x in r] for r in m]
        big = max((abs(x) for r in m for x in r), default=0.0) or 1.0
        m = [[x / big for x in r] for r in m]
    rank, cols = 0, len(m[0]) if m else 0
    for c in range(cols):
        pivot = max(range(rank, len(m)), key=lambda r: abs(m[r][c]), default=None)
        if pivot is None or _zero(m[pivot][c], exact):
            continue
        m[rank], m[pivot] = m[pivot], m[rank]
        for r in range(rank + 1, len(m)):
            f = m[r][c] / m[rank][c]
            if not _zero(f, exact):
                m[r] = [x - f * y for x, y in zip(m[r], m[rank], strict=True)]
        rank += 1
    return rank


def _solve(v: tuple, rows: list[tuple], exact: bool) -> list | None:
    """Coefficients x with sum_r x_r rows[r] = v for linearly independent rows, or None if v is not in their span."""
    n, dim = len(rows), len(v)
    # augmented system M x = v with M's columns the rows
    m = [[rows[r][d] for r in range(n)] + [v[d]] for d in range(dim)]
    if not exact:
        m = [[float(x) for x in row] for row in m]
    where, r = [], 0
    for c in range(n):
        pivot = max(range(r, dim), key=lambda i: abs(m[i][c]), default=None)
        if pivot is None or _zero(m[pivot][c], exact):
            return None  # the rows are dependent: callers pass independent ones
        m[r], m[pivot] = m[pivot], m[r]
        p = m[r][c]
        m[r] = [x / p for x in m[r]]
        for i in range(dim):
            if i != r and not _zero(m[i][c], exact):
                f = m[i][c]
                m[i] = [x - f * y for x, y in zip(m[i], m[r], strict=True)]
        where.append(r)
        r += 1
    scale = max((abs(float(x)) for x in v), default=0.0) or 1.0
    if any(not _zero(m[i][n] / (1 if exact else scale), exact) for i in range(r, dim)):
        return None
    x = [m[where[c]][n] for c in range(n)]
    return [0 if _zero(a, exact) else a for a in x]


def _equal(a: tuple, b: tuple, exact: bool) -> bool:
    return all(_zero(x - y, exact) for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------- the step as vectors
def _vectors(tableau, scale) -> tuple[list[tuple], tuple, bool]:
    """Stage inputs u_i and output w as coefficient vectors over (y_n, k_1..k_s), and whether they are exact."""
    s = tableau.stages
    exact = tableau.is_rational and isinstance(scale, (int, Fraction))
    one = Fraction(1) if exact else 1.0

    def vec(coefficients):
        values = [scale * x if exact else float(scale) * float(x) for x in coefficients]
        return (one, *values, *([0 * one] * (s - len(values))))

    return [vec(tableau.A[i][:i]) for i in range(s)], vec(tableau.b), exact


def _project(v: tuple, j: int, exact: bool) -> tuple:
    """v restricted to (y_n, k_1..k_j), other entries zero."""
    zero = Fraction(0) if exact else 0.0
    return tuple(x if d <= j else zero for d, x in enumerate(v))


def register_ranks(tableau, scale: Fraction | float = 1) -> tuple[int, ...]:
    """Per stage i, the rank of what must survive F_i: later inputs and the output over (y_n, k_1..k_{i-1})."""
    u, w, exact = _vectors(tableau, scale)
    s = tableau.stages
    return tuple(_rank([_project(v, i, exact) for v in (*u[i + 1:], w)], exact) for i in range(s))


# ---------------------------------------------------------------- programs
class _Builder:
    """Appends ops and tracks the vector of each tensor id."""

    def __init__(self, s: int, exact: bool) -> None:
        self.exact = exact
        one, zero = (Fraction(1), Fraction(0)) if exact else (1.0, 0.0)
        self.vectors: dict[int, tuple] = {0: (one, *([zero] * s))}
        self.ops: list[Op] = []

    def emit(self, kind: str, args: tuple[int, ...], vector: tuple, alpha=None, stage=None) -> int:
        out = len(self.vectors)
        self.vectors[out] = vector
        self.ops.append(Op(kind, out, args, alpha, stage))
        return out

    def evaluate(self, z: int, i: int) -> int:
        """k_i = F_i(z): a new coordinate."""
        zero, one = (Fraction(0), Fraction(1)) if self.exact else (0.0, 1.0)
        vector = tuple(one if d == i + 1 else zero for d in range(len(self.vectors[0])))
        return self.emit("eval", (z,), vector, stage=i)

    def combine(self, terms: list[tuple[int, Any]], early: int | None = None) -> int:
        """sum coefficient * tensor as a chain of axpys, starting from a term with coefficient 1 if there is one.

        The `early` tensor is added first, so that the chain is its last reader as soon as possible."""
        start = next((t for t in terms if _zero(t[1] - 1, self.exact)), terms[0])
        rest = sorted((t for t in terms if t is not start), key=lambda t: t[0] != early)
        first, a = start
        vec = tuple(a * x for x in self.vectors[first])
        out = first if _zero(a - 1, self.exact) else self.emit("scale", (first,), vec, a)
        for x, a in rest:
            vec = tuple(p + a * q for p, q in zip(vec, self.vectors[x], strict=True))
            out = self.emit("axpy", (out, x), vec, a)
        return out

    def express(self, v: tuple, pool: list[int]) -> list[tuple[int, object]] | None:
        """The sparsest expression of v over tensors of `pool` (subsets of up to 3, then any independent set)."""
        pool = list(dict.fromkeys(pool))
        for x in pool:
            if _equal(self.vectors[x], v, self.exact):
                return [(x, 1)]
        best = None
        for size in range(1, min(3, len(pool)) + 1):
            for subset in combinations(pool, size):
                rows = [self.vectors[x] for x in subset]
                if _rank(rows, self.exact) < size:
                    continue
                coef = _solve(v, rows, self.exact)
                if coef is not None and all(not _zero(c, self.exact) for c in coef):
                    unit = any(_zero(c - 1, self.exact) for c in coef)
                    if best is None or (not best[0] and unit):
                        best = (unit, list(zip(subset, coef, strict=True)))
            if best is not None:
                return best[1]
        basis: list[int] = []
        for x in pool:
            if _rank([self.vectors[b] for b in (*basis, x)], self.exact) > len(basis):
                basis.append(x)
        coef = _solve(v, [self.vectors[b] for b in basis], self.exact)
        if coef is None:
            return None
        return [(b, c) for b, c in zip(basis, coef, strict=True) if not _zero(c, self.exact)]

    def make(self, v: tuple, pool: list[int]) -> int:
        """A tensor holding v: an existing one when equal, else a new combination of `pool`."""
        terms = self.express(v, pool)
        if terms is None:  # pragma: no cover - the span argument guarantees an expression
            raise AssertionError(f"vector {v} is not in the span of the registers")
        return self.combine(terms)


@lru_cache(maxsize=256)
def register_program(tableau, scale: Fraction | float = 1) -> Program:
    """A step that holds, while each F_i runs, only a basis of the span `register_ranks` measures.

    After each k_i the new registers are the reduced echelon rows of what is still needed, in coordinates
    (old registers, k_i): each row starts from its pivot tensor, which nothing else reads, so every axpy
    frees the tensor it replaces (one temporary at a time). The pivot set is the one with the fewest axpys,
    the next stage's input counted.
    """
    u, w, exact = _vectors(tableau, scale)
    s = tableau.stages
    b = _Builder(s, exact)
    registers, z = [0], 0
    for i in range(s):
        k = b.evaluate(z, i)
        columns = [*registers, k]
        if i == s - 1:
            output = b.combine(_terms(b, w, columns, k), k)
            break
        needed = [_coordinates(b, _project(v, i + 1, exact), columns) for v in (*u[i + 2:], w)]
        target = _coordinates(b, u[i + 1], columns)
        rows, pivots, z_terms = _cheapest(needed, target, exact)
        registers = []
        for row, p in zip(rows, pivots, strict=True):
            terms = [(columns[p], 1)] + [(columns[m], x) for m, x in enumerate(row) if m != p and not _zero(x, exact)]
            registers.append(b.combine(terms, k))
        z = b.combine([((registers[pivots.index(m)] if m in pivots else columns[m]) if isinstance(m, int) else m, x)
                       for m, x in z_terms], k)
    return Program(tuple(b.ops), b.vectors, output)


def _coordinates(b: _Builder, v: tuple, columns: list[int]) -> list:
    """v over the (linearly independent) tensors `columns`."""
    coef = _solve(v, [b.vectors[x] for x in columns], b.exact)
    if coef is None:  # pragma: no cover - the registers span every later input and the output by construction
        raise AssertionError(f"vector {v} is not in the span of the registers")
    return coef


def _terms(b: _Builder, v: tuple, columns: list[int], k: int) -> list[tuple[int, object]]:
    return [(x, c) for x, c in zip(columns, _coordinates(b, v, columns), strict=True) if not _zero(c, b.exact)]


def _cheapest(needed: list[list], target: list, exact: bool):
    """Over every pivot set, the echelon basis of `needed` and the terms of `target` with the fewest ops."""
    width = len(target)
    rank = _rank([tuple(r) for r in needed], exact)
    best = None
    for pivots in combinations(range(width), rank):
        rows = _echelon(needed, pivots, exact)
        if rows is None:
            continue
        residual = list(target)
        for row, p in zip(rows, pivots, strict=True):
            f = target[p]
            residual = [x - f * y for x, y in zip(residual, row, strict=True)]
        z_terms = [(p, target[p]) for p in pivots if not _zero(target[p], exact)]
        z_terms += [(m, x) for m, x in enumerate(residual) if m not in pivots and not _zero(x, exact)]
        cost = sum(sum(not _zero(x, exact) for x in row) - 1 for row in rows) + _chain_cost(z_terms, exact)
        if best is None or cost < best[0]:
            best = (cost, rows, list(pivots), z_terms)
    assert best is not None, "some `rank` columns always pivot a matrix of that rank"
    return best[1], best[2], best[3]


def _chain_cost(terms: list, exact: bool) -> int:
    """Ops to form sum x * tensor: one axpy per term after the first, plus a scale if no coefficient is 1."""
    return len(terms) - 1 + (0 if any(_zero(x - 1, exact) for _, x in terms) else 1)


def _echelon(rows: list[list], pivots: tuple[int, ...], exact: bool) -> list[list] | None:
    """A basis of the row space with the identity on `pivots` (Gauss-Jordan), or None if they cannot be pivots."""
    m = [list(r) if exact else [float(x) for x in r] for r in rows]
    out: list[list] = []
    for p in pivots:
        pick = max(range(len(m)), key=lambda r: abs(m[r][p]), default=None)
        if pick is None or _zero(m[pick][p], exact):
            return None
        row = m.pop(pick)
        row = [x / row[p] for x in row]
        m = [[x - r[p] * y for x, y in zip(r, row, strict=True)] for r in m]
        out = [[x - o[p] * y for x, y in zip(o, row, strict=True)] for o in out]
        out.append(row)
    if any(not _zero(x, exact) for r in m for x in r):
        return None  # pragma: no cover - the pivots' count is the rank
    return [[0 if _zero(x, exact) else x for x in r] for r in out]


@lru_cache(maxsize=256)
def accumulate_program(tableau, scale: Fraction | float = 1) -> Program:
    """The direct lowering's step: each stage input summed from y_n and the k_j it uses, each b_j k_j added at once."""
    u, w, exact = _vectors(tableau, scale)
    s = tableau.stages
    b = _Builder(s, exact)
    ks: list[int] = []
    out = 0
    for i in range(s):
        z = 0
        for j in range(i):
            if not _zero(u[i][j + 1], exact):
                z = b.emit("axpy", (z, ks[j]), tuple(p + u[i][j + 1] * q for p, q in
                                                     zip(b.vectors[z], b.vectors[ks[j]], strict=True)), u[i][j + 1])
        ks.append(b.evaluate(z, i))
        if not _zero(w[i + 1], exact):
            out = b.emit("axpy", (out, ks[i]), tuple(p + w[i + 1] * q for p, q in
                                                    zip(b.vectors[out], b.vectors[ks[i]], strict=True)), w[i + 1])
    return Program(tuple(b.ops), b.vectors, out)


#: The lowerings a stage can ask for; "auto" picks "registers" where it keeps fewer activations alive.
LOWERINGS = ("auto", "accumulate", "registers")


@dataclass(frozen=True)
class LoweringChoice:
    """The lowering used for one tableau, with the live registers and axpy counts of both lowerings."""

    lowering: str
    registers: int  # most step tensors alive across an evaluation, in the chosen lowering
    accumulate_registers: int
    register_registers: int
    axpys: int  # elementwise ops per step, in the chosen lowering
    extra_axpys: int  # chosen minus accumulate: each one pass of 2 FLOPs per element of the state


def choose_lowering(tableau, scale=1, requested: str = "auto") -> LoweringChoice:
    """Which lowering a step of `tableau` uses: `requested`, or for "auto" the one with fewer live registers."""
    acc, reg = accumulate_program(tableau, scale), register_program(tableau, scale)
    acc_live, reg_live = max(acc.live_during()), max(reg.live_during())
    lowering = requested
    if requested == "auto":
        # fewer registers across every F, and no higher peak between them (each F's own temporaries are the same)
        lowering = "registers" if reg_live < acc_live and reg.peak() <= acc.peak() else "accumulate"
    chosen = reg if lowering == "registers" else acc
    return LoweringChoice(lowering, reg_live if lowering == "registers" else acc_live, acc_live, reg_live,
                          chosen.axpys, chosen.axpys - acc.axpys)


def stage_lowering(stage) -> LoweringChoice | None:
    """The lowering an RK stage compiles with (its `lowering` field, scale h * epsilon unless h is learned);
    None for other integrator families, which have their own lowering."""
    if stage.family.name != "rk":
        return None
    scale = (1 if stage.step.learn != "none" else stage.h) * stage.step.epsilon.value
    return choose_lowering(stage.tableau, scale, stage.lowering)
