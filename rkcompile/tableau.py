"""The one Butcher tableau type: plain frozen data, checked when built, derived facts computed once.

Conventions follow diffrax (`diffrax/_solver/runge_kutta.py`) and torchdiffeq (`_impl/rk_common.py`):
`b_error` is b minus the embedded weights, so the local error estimate is h * sum_i b_error_i k_i.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any, TypeGuard

import numpy as np

from rkcompile.errors import TableauError
from rkcompile.exact import (
    MAX_MAGNITUDE,
    Coefficient,
    display_coefficient,
    format_coefficient,
    is_decimal_text,
    parse_coefficient,
)
from rkcompile.trees import ORDER_RTOL, exact_feasible, orders

__all__ = ["Tableau", "TableauText", "ROW_RTOL"]

#: Tolerance of the row-sum, sum(b) = 1 and sum(b_error) = 0 checks, relative to the largest entry involved
#: (at least 1). The difference itself is computed exactly when every entry is a Fraction, so exact tableaux
#: pass with difference 0; the tolerance admits float tableaux (Verner 8(9)'s row 12 has entries near 1e3 and
#: holds in float64 to ~1.5e-13) and published rational approximations (Prince-Dormand RK8(7)13M's rows sum to
#: its published c only to ~1e-17).
ROW_RTOL = 1e-12


@dataclass(frozen=True)
class TableauText:
    """The coefficients as written (e.g. "(6+sqrt(6))/15"), kept for display; same shapes as the tableau."""

    c: tuple[str, ...]
    A: tuple[tuple[str, ...], ...]
    b: tuple[str, ...]
    b_error: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge-Kutta tableau (c, A, b) with optional error weights b_error = b - b_embedded."""

    name: str
    c: tuple[Coefficient, ...]
    A: tuple[tuple[Coefficient, ...], ...]
    b: tuple[Coefficient, ...]
    b_error: tuple[Coefficient, ...] | None = None
    source: str = ""
    labels: TableauText | None = field(default=None, compare=False, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_text(cls, name: str, c: Sequence[object], A: Sequence[Sequence[object]], b: Sequence[object], *,
                  b_error: Sequence[object] | None = None, b_embedded: Sequence[object] | None = None,
                  source: str = "") -> Tableau:
        """Build from numbers or exact strings, keeping the text; A may be full (s x s) or lower-triangular."""
        if b_error is not None and b_embedded is not None:
            raise TableauError(f"tableau {name!r}: give b_error (= b - b_embedded) or b_embedded, not both")
        c_val, c_txt = _parse_vector(name, "c", c)
        b_val, b_txt = _parse_vector(name, "b", b)
        rows = _full_rows(name, A, len(c_val))
        parsed = [_parse_vector(name, f"row {i + 1} of A", row, f"a_{{{i + 1},#}}") for i, row in enumerate(rows)]
        e_val = e_txt = None
        if b_error is not None:
            e_val, e_txt = _parse_vector(name, "b_error", b_error)
        elif b_embedded is not None:
            emb_val, emb_txt = _parse_vector(name, "b_embedded", b_embedded)
            if len(emb_val) != len(b_val):
                raise TableauError(f"tableau {name!r}: b_embedded has {len(emb_val)} entries but b has {len(b_val)}")
            e_val = tuple(x - y for x, y in zip(b_val, emb_val, strict=True))
            # b - b_embedded in the style of its operands: Tsitouras' decimals give a decimal, not a huge fraction
            e_txt = tuple(display_coefficient(x, is_decimal_text(p) or is_decimal_text(q))
                          for x, p, q in zip(e_val, b_txt, emb_txt, strict=True))
        text = TableauText(c_txt, tuple(t for _, t in parsed), b_txt, e_txt)
        return cls(name, c_val, tuple(v for v, _ in parsed), b_val, e_val, source, text)

    def __post_init__(self) -> None:
        """Coerce entries to Coefficients and check shape, explicitness, row sums and consistency."""
        name = self.name
        if not isinstance(name, str) or not name:
            raise TableauError(f"a tableau's name must be a non-empty string, found {name!r}")
        c = _parse_vector(name, "c", self.c, parse=_keep_float)[0]
        s = len(c)
        if s == 0:
            raise TableauError(f"tableau {name!r}: has no stages (c is empty); a tableau needs at least 1 stage")
        b = _parse_vector(name, "b", self.b, parse=_keep_float)[0]
        if len(b) != s:
            raise TableauError(f"tableau {name!r}: b has {len(b)} entries but c has {s} (one per stage)")
        if not _is_sequence(self.A) or len(self.A) != s:
            found = f"{len(self.A)} rows" if _is_sequence(self.A) else type(self.A).__name__
            raise TableauError(f"tableau {name!r}: A must be {s} x {s} (one row per stage), found {found}")
        A = tuple(_parse_vector(name, f"row {i + 1} of A", row, f"a_{{{i + 1},#}}", _keep_float)[0]
                  for i, row in enumerate(self.A))
        for i, row in enumerate(A):
            if len(row) != s:
                raise TableauError(f"tableau {name!r}: row {i + 1} of A has {len(row)} entries; A must be {s} x {s}")
        e = None
        if self.b_error is not None:
            e = _parse_vector(name, "b_error", self.b_error, parse=_keep_float)[0]
            if len(e) != s:
                raise TableauError(f"tableau {name!r}: b_error has {len(e)} entries but there are {s} stages")
        if not isinstance(self.source, str):
            raise TableauError(f"tableau {name!r}: source must be a string, found {type(self.source).__name__}")
        for attr, value in (("c", c), ("A", A), ("b", b), ("b_error", e)):
            object.__setattr__(self, attr, value)
        self._check_labels()
        self._check_values()

    def _check_values(self) -> None:
        """The checks of Butcher's theory that need no order conditions; the first failure is reported."""
        name, s, A = self.name, self.stages, self.A
        for i in range(s):
            for j in range(i, s):
                if A[i][j] != 0:
                    raise TableauError(
                        f"tableau {name!r}: not explicit: a_{{{i + 1},{j + 1}}} = {self._label('A', i, j)} is on or "
                        f"above the diagonal (an explicit tableau needs a_ij = 0 for j >= i)")
        for i in range(s):
            total = _sum(A[i])
            if not _close(total, self.c[i], (*A[i], self.c[i])):
                raise TableauError(
                    f"tableau {name!r}: row-sum condition fails at row {i + 1}: sum_j a_{{{i + 1},j}} = "
                    f"{_show(total)} but c_{i + 1} = {self._label('c', i)} (difference {_show_diff(total, self.c[i])})")
        total = _sum(self.b)
        if not _close(total, Fraction(1), self.b):
            raise TableauError(f"tableau {name!r}: not consistent: the weights b sum to {_show(total)} instead of 1 "
                               f"(difference {_show_diff(total, Fraction(1))})")
        if self.b_error is not None:
            total = _sum(self.b_error)
            if not _close(total, Fraction(0), self.b_error):
                raise TableauError(f"tableau {name!r}: b_error (= b - b_embedded) must sum to 0, found {_show(total)} "
                                   f"(the embedded weights must sum to 1 too)")

    def _check_labels(self) -> None:
        """Display labels, when given, must match the coefficients' shapes."""
        t = self.labels
        if t is None:
            return
        ok = (isinstance(t, TableauText) and len(t.c) == self.stages and len(t.b) == self.stages
              and len(t.A) == self.stages and all(len(r) == self.stages for r in t.A)
              and (t.b_error is None) == (self.b_error is None))
        if not ok:
            raise TableauError(f"tableau {self.name!r}: labels do not match the tableau's shape")

    def _label(self, part: str, i: int, j: int = 0) -> str:
        """The text of one coefficient, as written when known."""
        if part == "A":
            return self.labels.A[i][j] if self.labels else format_coefficient(self.A[i][j])
        vec = getattr(self.labels, part) if self.labels else None
        return vec[i] if vec is not None else format_coefficient(getattr(self, part)[i])

    # ------------------------------------------------------------------ derived facts
    @property
    def stages(self) -> int:
        """Number of stages s (evaluations of F per step)."""
        return len(self.c)

    @property
    def b_embedded(self) -> tuple[Coefficient, ...] | None:
        """The embedded weights b - b_error, or None."""
        return None if self.b_error is None else tuple(x - y for x, y in zip(self.b, self.b_error, strict=True))

    def _weight_vectors(self) -> list[tuple[Coefficient, ...]]:
        """b, and the embedded weights when the tableau has error weights."""
        embedded = self.b_embedded  # None exactly when b_error is None
        return [self.b] if embedded is None else [self.b, embedded]

    @cached_property
    def _orders(self) -> tuple[int, int | None]:
        found = orders(self.A, self._weight_vectors())
        return found[0], (found[1] if self.b_error is not None else None)

    @cached_property
    def exact_order_check(self) -> bool:
        """Whether the order was decided in exact arithmetic (rational and within trees.MAX_EXACT_WORK)."""
        return exact_feasible(self.A, self._weight_vectors())

    @property
    def order(self) -> int:
        """Largest p <= 10 such that every rooted-tree order condition up to p holds (Butcher)."""
        return self._orders[0]

    @property
    def embedded_order(self) -> int | None:
        """Order of the embedded weights b - b_error, or None without them."""
        return self._orders[1]

    @cached_property
    def is_rational(self) -> bool:
        """True when every coefficient is an exact Fraction."""
        values = (*self.c, *(x for row in self.A for x in row), *self.b, *(self.b_error or ()))
        return all(isinstance(x, Fraction) for x in values)

    @cached_property
    def decimal(self) -> bool:
        """True when the coefficients were written as decimal literals (Tsitouras 2011): values derived from them
        (a_ij·h, c_i·h) are then shown as decimals too (`exact.display_coefficient`)."""
        t = self.labels
        if t is None:
            return False
        return any(is_decimal_text(x) for x in (*t.c, *(x for row in t.A for x in row), *t.b))

    def show(self, x: Coefficient) -> str:
        """A value derived from this tableau's coefficients, in the style they were written."""
        return display_coefficient(x, self.decimal)

    @cached_property
    def fsal(self) -> bool:
        """First Same As Last: the last stage is evaluated at y_{n+1} (last row of A is b and c_s = 1)."""
        return tuple(self.A[-1]) == tuple(self.b) and self.c[-1] == 1

    def needed_stages(self) -> tuple[int, ...]:
        """0-based indices of the stages whose value reaches the output y_{n+1} through b."""
        return _needed(self.A, self.b)

    def pruned(self) -> Tableau:
        """This tableau without the stages that never reach the output (b_error kept only if it still fits)."""
        keep = self.needed_stages()
        if len(keep) == self.stages:
            return self
        e = None
        embedded = self.b_embedded  # None exactly when b_error is None
        if self.b_error is not None and embedded is not None and set(_needed(self.A, embedded)) <= set(keep):
            e = tuple(self.b_error[j] for j in keep)

        def pick(vec):
            return tuple(vec[j] for j in keep)

        labels = None
        if self.labels is not None:
            t = self.labels
            labels = TableauText(pick(t.c), tuple(pick(t.A[i]) for i in keep), pick(t.b),
                                 pick(t.b_error) if e is not None else None)
        return Tableau(self.name, pick(self.c), tuple(pick(self.A[i]) for i in keep), pick(self.b), e,
                       self.source, labels)

    def as_float(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(c, A, b) as float64 numpy arrays."""
        c = np.array([float(x) for x in self.c], dtype=np.float64)
        A = np.array([[float(x) for x in row] for row in self.A], dtype=np.float64)
        return c, A, np.array([float(x) for x in self.b], dtype=np.float64)

    # ------------------------------------------------------------------ display
    def describe(self) -> str:
        """A readable multi-line Butcher array with the coefficients as written (one line per stage if wide)."""
        s, has_e = self.stages, self.b_error is not None
        head = f"{self.name}: {s} stage{'s' if s > 1 else ''}, order {self.order}"
        if self.is_rational and not self.exact_order_check:
            head += f" (float64 check, relative tolerance {ORDER_RTOL:g}: the exact check is too large)"
        head += f", embedded order {self.embedded_order}" if has_e else ""
        head += ", FSAL" if self.fsal else ""
        dropped = sorted(set(range(s)) - set(self.needed_stages()))
        if dropped:
            numbers = ", ".join(str(j + 1) for j in dropped)
            which = f"stages {numbers} do" if len(dropped) > 1 else f"stage {numbers} does"
            head += f"; {which} not reach the output (pruned when compiled)"
        lines = [head] + ([f"source: {self.source}"] if self.source else [])
        left = [self._label("c", i) for i in range(s)] + ["b"] + (["b_error"] if has_e else [])
        body = [[self._label("A", i, j) for j in range(i)] for i in range(s)]
        body += [[self._label(part, j) for j in range(s)] for part in ("b", "b_error")[: 1 + has_e]]
        widths = [max(len(row[j]) for row in body if len(row) > j) for j in range(s)]
        lw = max(map(len, left))
        if lw + 3 + sum(widths) + 2 * s <= 140:
            for k, (lab, row) in enumerate(zip(left, body, strict=True)):
                if k == s:
                    lines.append("-" * (lw + 1) + "+" + "-" * (sum(widths) + 2 * s - 1))
                cells = "  ".join(x.rjust(w) for x, w in zip(row, widths, strict=False))  # row i has i entries
                lines.append(f"{lab.rjust(lw)} | {cells}".rstrip())
        else:  # too wide for a terminal as an array
            lines += [f"stage {i + 1}: c = {left[i]}; a = [{', '.join(body[i])}]" for i in range(s)]
            lines += [f"{lab} = [{', '.join(row)}]" for lab, row in zip(left[s:], body[s:], strict=True)]
        return "\n".join(lines)

    def __str__(self) -> str:
        """The Butcher array, as `describe()`."""
        return self.describe()


# ---------------------------------------------------------------------- helpers
def _is_sequence(value: object) -> TypeGuard[Sequence[Any] | np.ndarray]:
    """A list-like of entries (a string is not one)."""
    return isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes))


def _keep_float(value: object) -> Coefficient:
    """Coerce an entry of an already-built tableau: floats stay floats (they may be values such as sqrt(6)/15,
    not decimal literals), everything else goes through parse_coefficient."""
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
            raise TableauError(f"coefficient {value!r} is not finite or too large")
        return float(value)
    return parse_coefficient(value)


def _parse_vector(name: str, what: str, values: object, entry: str | None = None,
                  parse=parse_coefficient) -> tuple[tuple[Coefficient, ...], tuple[str, ...]]:
    """Parse a list of coefficients; errors name the tableau and the entry (1-based, e.g. c_3 or a_{2,1})."""
    if not _is_sequence(values):
        raise TableauError(f"tableau {name!r}: {what} must be a list of coefficients, found {type(values).__name__}")
    entry = entry or what + "_#"  # '#' stands for the 1-based index
    parsed, text = [], []
    for k, v in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
        if hasattr(v, "text") and hasattr(v, "value"):  # a spec's coefficient, parsed once at validation
            parsed.append(v.value)
            text.append(v.text.strip() if isinstance(v.text, str) else format_coefficient(v.value))
            continue
        try:
            x = parse(v)
        except TableauError as err:
            raise TableauError(f"tableau {name!r}: {entry.replace('#', str(k + 1))}: {err}") from None
        parsed.append(x)
        text.append(v.strip() if isinstance(v, str) else format_coefficient(x))
    return tuple(parsed), tuple(text)


def _full_rows(name: str, A: object, s: int) -> list[list[object]]:
    """Pad A given as full rows, lower-triangular rows (row i has i-1 or i entries), or without its zero first row."""
    if not _is_sequence(A) or not all(_is_sequence(r) for r in A):
        raise TableauError(f"tableau {name!r}: A must be a list of rows (lists of coefficients)")
    rows = [list(r) for r in A]
    if len(rows) == s - 1 and all(len(r) == i + 1 for i, r in enumerate(rows)):
        rows.insert(0, [])  # diffrax-style lower part: rows 2..s only
    if len(rows) != s:
        raise TableauError(f"tableau {name!r}: A has {len(rows)} rows but c has {s} entries (one row per stage)")
    for i, r in enumerate(rows):
        if len(r) not in (i, i + 1, s):
            raise TableauError(f"tableau {name!r}: row {i + 1} of A has {len(r)} entries; expected {s} (full row) or "
                               f"{i} (below the diagonal)")
        r.extend([0] * (s - len(r)))
    return rows


def _needed(A: Sequence[Sequence[Coefficient]], w: Sequence[Coefficient]) -> tuple[int, ...]:
    """Stages j with w_j != 0 or feeding (a_ij != 0) some needed later stage i."""
    s = len(w)
    need = [False] * s
    for j in reversed(range(s)):
        need[j] = w[j] != 0 or any(need[i] and A[i][j] != 0 for i in range(j + 1, s))
    return tuple(j for j in range(s) if need[j])


def _sum(values: Sequence[Coefficient]) -> Coefficient:
    """Exact sum of Fractions; a correctly rounded float sum as soon as one value is a float."""
    if all(isinstance(x, Fraction) for x in values):
        return sum(values, Fraction(0))
    return math.fsum(float(x) for x in values)


def _close(total: Coefficient, target: Coefficient, entries: Sequence[Coefficient]) -> bool:
    """total == target exactly, or within ROW_RTOL relative to the largest entry (at least 1)."""
    diff = total - target
    if diff == 0:
        return True
    scale = max(1.0, *(abs(float(x)) for x in entries))
    return math.isfinite(float(diff)) and abs(float(diff)) <= ROW_RTOL * scale


def _show(x: Coefficient) -> str:
    """Short text of a computed value: exact when the fraction is short, else the shortest float repr."""
    if isinstance(x, Fraction) and len(str(x)) <= 24:
        return str(x)
    return repr(float(x))


def _show_diff(x: Coefficient, y: Coefficient) -> str:
    """The difference x - y in three significant digits."""
    return f"{float(x - y):.3g}"
