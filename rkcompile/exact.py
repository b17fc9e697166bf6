"""Safe exact arithmetic for Butcher coefficients: a tiny expression parser (never `eval`) and a formatter."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Union

from rkcompile.errors import TableauError

__all__ = ["Coefficient", "parse_coefficient", "format_coefficient", "display_coefficient", "is_decimal_text",
           "MAX_TEXT_LENGTH", "MAX_DEPTH", "MAX_MAGNITUDE"]

#: A coefficient is exact (`Fraction`) whenever its expression is rational, otherwise a float.
Coefficient = Union[Fraction, float]

#: Longest expression accepted; the longest real coefficient (Verner 8(9)) is about 40 characters.
MAX_TEXT_LENGTH = 200
#: Deepest nesting of parentheses, sqrt and unary signs; bounds the parser's recursion.
MAX_DEPTH = 32
#: Largest magnitude accepted, far above any published coefficient; keeps every float conversion finite.
MAX_MAGNITUDE = 1e100
#: float32's smallest normal and largest finite numbers: a network computes with the coefficient in float32.
FLOAT32_TINY = 1.1754943508222875e-38
FLOAT32_MAX = 3.4028234663852886e38
#: Largest decimal exponent in a number literal; stops "1e999999999" from building a huge integer.
_MAX_EXPONENT = 400

# Unicode operators that papers and copy-paste from PDFs produce, mapped to ASCII.
_UNICODE = {"\u2212": "-", "\u00d7": "*", "\u00f7": "/", "\u2013": "-"}


def parse_coefficient(value: object) -> Coefficient:
    """Turn an int, float, Fraction or expression string such as "(6+sqrt(6))/15" into a Coefficient."""
    # bool is an int subclass, but `True` in a tableau is a typo, not the number 1.
    if isinstance(value, bool):
        raise TableauError(f"expected a number or an expression such as \"1/6\", found a boolean ({value})")
    if isinstance(value, str):
        result = _Parser(value).parse()
    elif isinstance(value, Fraction):
        result = value
    elif isinstance(value, numbers.Integral):
        result = Fraction(int(value))
    elif isinstance(value, numbers.Rational):
        result = Fraction(int(value.numerator), int(value.denominator))
    elif isinstance(value, numbers.Real):
        x = float(value)
        if not math.isfinite(x):
            raise TableauError(f"coefficient {x!r} is not finite")
        # A float in a tableau stands for the decimal literal that was written, so take that exactly.
        result = Fraction(repr(x))
    else:
        raise TableauError(
            f"expected a number or an expression such as \"1/6\", found {type(value).__name__} ({value!r:.40})"
        )
    _check_magnitude(value, result)
    return result


def format_coefficient(x: Coefficient) -> str:
    """Render a coefficient: a Fraction as "0", "1", "-27/140"; a float by its shortest repr."""
    if isinstance(x, Fraction):
        return str(x)
    if isinstance(x, numbers.Integral):
        return str(int(x))
    return repr(float(x))


def is_decimal_text(text: object) -> bool:
    """True for a coefficient written as a decimal literal ("0.161", "-8.48e-3"), not a fraction or expression."""
    if not isinstance(text, str):
        return isinstance(text, float)
    t = text.strip().lstrip("+-\u2212")
    return any(ch in t for ch in ".eE") and all(ch.isdigit() or ch in ".eE+-" for ch in t) and t[:1] != "e"


def display_coefficient(x: Coefficient, decimal: bool = False) -> str:
    """A coefficient for people, in the style it was written: exact fractions as fractions ("-27/140"), values
    computed from decimal literals (`decimal`) as exact decimals ("-0.008480655492356989") when they terminate,
    and anything irrational or not terminating to 4 significant digits."""
    if isinstance(x, numbers.Integral) and not isinstance(x, bool):
        return str(int(x))
    if not isinstance(x, Fraction):
        return f"{float(x):.4g}"
    if x.denominator == 1:
        return str(x.numerator)
    if not decimal:
        return str(x)
    twos = fives = 0
    d = x.denominator
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:  # 0.161 / 3 does not terminate
        return f"{float(x):.4g}"
    places = max(twos, fives)
    digits = str(abs(x.numerator) * 10**places // x.denominator).rjust(places + 1, "0")
    return ("-" if x < 0 else "") + f"{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")


def _check_magnitude(original: object, result: Coefficient) -> None:
    """Reject results whose size would overflow float arithmetic later on."""
    if isinstance(result, float) and not math.isfinite(result):
        raise TableauError(f"coefficient {original!r} evaluates to {result!r}, which is not finite")
    size = _abs(result)
    if size > MAX_MAGNITUDE:
        raise TableauError(f"coefficient {original!r:.60} is too large (magnitude above {MAX_MAGNITUDE:g})")
    if result != 0 and not FLOAT32_TINY <= size <= FLOAT32_MAX:
        raise TableauError(f"coefficient {original!r:.60} is {'not finite' if size > 1 else 'zero or subnormal'}"
                           f" in float32 (nonzero magnitudes must lie in {FLOAT32_TINY:.4g} ... {FLOAT32_MAX:.4g})")


def _abs(x: Coefficient) -> Coefficient:
    """|x| with its type kept (mypy types abs() of the Fraction | float union as object)."""
    if isinstance(x, Fraction):
        return abs(x)
    return abs(x)


def _sqrt(x: Coefficient) -> Coefficient:
    """Square root that stays exact for perfect-square rationals such as 9/4."""
    if isinstance(x, Fraction):
        n, d = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if n * n == x.numerator and d * d == x.denominator:
            return Fraction(n, d)
    return math.sqrt(float(x))  # operands are bounded (see _Parser.bounded), so this is finite


class _Parser:
    """Recursive-descent parser for: expr := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*;
    unary := ('+'|'-') unary | number | 'sqrt' '(' expr ')' | '(' expr ')'."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.src = "".join(_UNICODE.get(ch, ch) for ch in text)
        self.pos = 0
        self.depth = 0

    # -------------------------------------------------------------- errors and scanning
    def fail(self, what: str, pos: int | None = None) -> TableauError:
        """An error that quotes the text and gives the 1-based character position."""
        at = self.pos if pos is None else pos
        return TableauError(f"cannot parse coefficient {self.text!r}: {what} at position {at + 1}")

    def skip_space(self) -> None:
        """Advance over blanks."""
        while self.pos < len(self.src) and self.src[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        """The next non-blank character, or '' at the end."""
        self.skip_space()
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def found(self) -> str:
        """Describe what is at the current position, for error messages."""
        ch = self.peek()
        return f"found {ch!r}" if ch else "found the end of the text"

    def enter(self) -> None:
        """Count one nesting level; refuse inputs that would recurse too deeply."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested too deeply (more than {MAX_DEPTH} levels)")

    # -------------------------------------------------------------- grammar
    def parse(self) -> Coefficient:
        """Parse the whole text."""
        if len(self.text) > MAX_TEXT_LENGTH:
            raise TableauError(
                f"cannot parse coefficient {self.text[:40]!r}...: longer than {MAX_TEXT_LENGTH} characters"
                f" ({len(self.text)})"
            )
        if not self.text.strip():
            raise TableauError(f"cannot parse coefficient {self.text!r}: the text is empty")
        value = self.expr()
        if self.peek():
            raise self.fail(f"expected an operator (+ - * /) or the end, {self.found()}")
        return value

    def expr(self) -> Coefficient:
        """Sum or difference of terms."""
        value = self.term()
        while self.peek() in ("+", "-"):
            op, at = self.src[self.pos], self.pos
            self.pos += 1
            rhs = self.term()
            value = self.apply(op, value, rhs, at)
        return value

    def term(self) -> Coefficient:
        """Product or quotient of unary factors."""
        value = self.unary()
        while self.peek() in ("*", "/"):
            op, at = self.src[self.pos], self.pos
            self.pos += 1
            rhs = self.unary()
            if op == "/" and rhs == 0:
                raise self.fail("division by zero", at)
            value = self.apply(op, value, rhs, at)
        return value

    def apply(self, op: str, lhs: Coefficient, rhs: Coefficient, at: int) -> Coefficient:
        """One binary operation; Fraction with Fraction stays exact, anything with a float is a float."""
        try:
            if op == "+":
                value = lhs + rhs
            elif op == "-":
                value = lhs - rhs
            else:
                value = lhs * rhs if op == "*" else lhs / rhs
        except OverflowError:
            # Mixing a huge exact value with a float converts it to float, which can overflow.
            raise self.fail("number too large", at) from None
        except ZeroDivisionError:  # a tiny exact divisor that float conversion turns into 0.0
            raise self.fail("number too small", at) from None
        return self.bounded(value, at)

    def bounded(self, value: Coefficient, at: int) -> Coefficient:
        """Keep every intermediate value within [1/MAX_MAGNITUDE, MAX_MAGNITUDE] in magnitude (or zero).

        This bounds the size of the exact integers (so the work) and keeps every float conversion finite and
        normal, whatever the text: "sqrt(1e399)" or "sqrt(2)/1e-400" are one-line errors, not overflows.
        """
        size = _abs(value)
        if value != 0 and not (1 / MAX_MAGNITUDE <= size <= MAX_MAGNITUDE):
            raise self.fail(f"number too {'large' if size > 1 else 'small'}", at)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail("number is not finite", at)
        return value

    def unary(self) -> Coefficient:
        """Signed factor: a number, sqrt(...) or a parenthesised expression."""
        self.enter()
        ch = self.peek()
        if ch in ("+", "-"):
            self.pos += 1
            value = self.unary()
            value = -value if ch == "-" else value
        elif ch == "(":
            self.pos += 1
            value = self.expr()
            self.expect(")")
        elif ch.isdigit() or ch == ".":
            value = self.number()
        elif ch.isalpha() or ch == "_":
            value = self.function()
        else:
            raise self.fail(f"expected a number, 'sqrt(' or '(', {self.found()}")
        self.depth -= 1
        return value

    def expect(self, ch: str) -> None:
        """Consume `ch` or fail."""
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}, {self.found()}")
        self.pos += 1

    def function(self) -> Coefficient:
        """The one function there is: sqrt(expr)."""
        start = self.pos
        while self.pos < len(self.src) and (self.src[self.pos].isalnum() or self.src[self.pos] == "_"):
            self.pos += 1
        name = self.src[start:self.pos]
        if name != "sqrt":
            raise self.fail(f"unknown name {name!r} (only sqrt(...) is allowed)", start)
        self.expect("(")
        arg_at = self.pos
        arg = self.expr()
        self.expect(")")
        self.bounded(arg, arg_at)
        if arg < 0:
            raise self.fail(f"square root of a negative number ({format_coefficient(arg)})", arg_at)
        return self.bounded(_sqrt(arg), arg_at)

    def number(self) -> Fraction:
        """Decimal literal with optional fraction and exponent, taken exactly."""
        start = self.pos
        src = self.src
        digits = 0
        while self.pos < len(src) and src[self.pos].isdigit():
            self.pos += 1
            digits += 1
        if self.pos < len(src) and src[self.pos] == ".":
            self.pos += 1
            while self.pos < len(src) and src[self.pos].isdigit():
                self.pos += 1
                digits += 1
        if digits == 0:
            raise self.fail("expected digits in a number", start)
        if self.pos < len(src) and src[self.pos] in "eE":
            exp_at = self.pos
            self.pos += 1
            if self.pos < len(src) and src[self.pos] in "+-":
                self.pos += 1
            exp_start = self.pos
            while self.pos < len(src) and src[self.pos].isdigit():
                self.pos += 1
            if exp_start == self.pos:
                raise self.fail("expected digits after the exponent 'e'", exp_at)
            if int(src[exp_start:self.pos]) > _MAX_EXPONENT:
                raise self.fail(f"exponent larger than {_MAX_EXPONENT}", exp_at)
        literal = src[start:self.pos]
        if digits > MAX_TEXT_LENGTH:  # pragma: no cover - the text length bounds this first
            raise self.fail("too many digits", start)
        # Fraction wants a digit before the point ("0.5", not ".5").
        return Fraction("0" + literal if literal.startswith(".") else literal)  # the exponent bounds its size
