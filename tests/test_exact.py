"""Tests of rkcompile.exact: the coefficient parser (never eval) and formatter."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rkcompile.errors import TableauError
from rkcompile.exact import MAX_DEPTH, MAX_TEXT_LENGTH, format_coefficient, parse_coefficient


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1/6", Fraction(1, 6)),
        ("sqrt(4)/2", Fraction(1)),
        ("1e-3", Fraction(1, 1000)),
        ("2.5E+2", Fraction(250)),
        (".5", Fraction(1, 2)),
        ("-27/140", Fraction(-27, 140)),
        ("+3", Fraction(3)),
        ("--1", Fraction(1)),
        ("1 - 2 - 3", Fraction(-4)),  # left-associative
        ("2 + 3 * 4", Fraction(14)),  # * binds tighter than +
        ("(2 + 3) * 4", Fraction(20)),
        ("8 / 4 / 2", Fraction(1)),
        ("-1/2 * -4", Fraction(2)),
        ("sqrt(9/4)", Fraction(3, 2)),
        ("sqrt(0)", Fraction(0)),
        ("0.1", Fraction(1, 10)),  # decimal literals are exact, not binary floats
        ("2 \u00d7 3 \u2212 1 \u00f7 2", Fraction(11, 2)),  # unicode operators from PDFs
        ("  1 /  3 ", Fraction(1, 3)),
    ],
)
def test_rational_expressions_stay_exact(text, expected):
    value = parse_coefficient(text)
    assert isinstance(value, Fraction)
    assert value == expected


def test_irrational_expressions_become_floats():
    x = parse_coefficient("(6+sqrt(6))/15")
    assert isinstance(x, float)
    assert x == pytest.approx(0.5632993161855452, rel=1e-15)
    assert parse_coefficient("sqrt(2)") == pytest.approx(math.sqrt(2))
    assert parse_coefficient("sqrt(2)*sqrt(2)") == pytest.approx(2.0)
    assert parse_coefficient("(-84*sqrt(6)-94)/125") == pytest.approx((-84 * math.sqrt(6) - 94) / 125)


@pytest.mark.parametrize(
    "value, expected",
    [(3, Fraction(3)), (0, Fraction(0)), (0.1, Fraction(1, 10)), (-2.5, Fraction(-5, 2)),
     (Fraction(2, 7), Fraction(2, 7)), (1e-3, Fraction(1, 1000))],
)
def test_numbers(value, expected):
    result = parse_coefficient(value)
    assert isinstance(result, Fraction)
    assert result == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("1/0", "cannot parse coefficient '1/0': division by zero at position 2"),
        ("1/(2-2)", "cannot parse coefficient '1/(2-2)': division by zero at position 2"),
        ("sqrt(-1)", "cannot parse coefficient 'sqrt(-1)': square root of a negative number (-1) at position 6"),
        ("2**3", "cannot parse coefficient '2**3': expected a number, 'sqrt(' or '(', found '*' at position 3"),
        ("__import__('os')", "unknown name '__import__' (only sqrt(...) is allowed) at position 1"),
        ("exp(1)", "unknown name 'exp' (only sqrt(...) is allowed) at position 1"),
        ("", "cannot parse coefficient '': the text is empty"),
        ("   ", "the text is empty"),
        ("((((1", "expected ')', found the end of the text at position 6"),
        ("sqrt(2", "expected ')', found the end of the text at position 7"),
        ("sqrt 2", "expected '(', found '2' at position 6"),
        ("1 2", "expected an operator (+ - * /) or the end, found '2' at position 3"),
        ("1..2", "found '.' at position 3"),
        ("1e", "expected digits after the exponent 'e' at position 2"),
        ("1e999", "exponent larger than 400 at position 2"),
        ("1e400*sqrt(2)", "number too large at position 6"),
        ("1e200", "is too large"),
        ("2^3", "expected an operator (+ - * /) or the end, found '^' at position 2"),
        ("1/", "expected a number, 'sqrt(' or '(', found the end of the text at position 3"),
        ("(" * 40 + "1" + ")" * 40, f"nested too deeply (more than {MAX_DEPTH} levels)"),
        ("-" * 40 + "1", "nested too deeply"),
        ("1" * (MAX_TEXT_LENGTH + 1), f"longer than {MAX_TEXT_LENGTH} characters ({MAX_TEXT_LENGTH + 1})"),
    ],
)
def test_parse_errors_quote_the_text_and_the_position(text, message):
    with pytest.raises(TableauError) as err:
        parse_coefficient(text)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "value, message",
    [
        (True, 'expected a number or an expression such as "1/6", found a boolean (True)'),
        (None, 'expected a number or an expression such as "1/6", found NoneType (None)'),
        ([1], "found list"),
        (float("nan"), "coefficient nan is not finite"),
        (float("inf"), "coefficient inf is not finite"),
        (10**200, "is too large"),
    ],
)
def test_bad_values(value, message):
    with pytest.raises(TableauError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_coefficient(value)


def test_format():
    assert format_coefficient(Fraction(0)) == "0"
    assert format_coefficient(Fraction(1)) == "1"
    assert format_coefficient(Fraction(-27, 140)) == "-27/140"
    assert format_coefficient(0.1) == "0.1"
    assert format_coefficient(parse_coefficient("sqrt(2)")) == repr(math.sqrt(2))


@given(st.fractions(max_denominator=10**6).filter(lambda f: abs(f) < 10**12))
def test_format_then_parse_round_trips_fractions(f):
    assert parse_coefficient(format_coefficient(f)) == f


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e38, max_value=1e38)
       .filter(lambda x: x == 0 or abs(x) >= 1.2e-38))  # float32's normal range: the rest is refused (below)
def test_format_then_parse_round_trips_floats(x):
    assert float(parse_coefficient(format_coefficient(x))) == x


# Random expressions built together with their value computed by Fraction arithmetic, so the parser's
# precedence and associativity are checked against Python's own rules.
_leaf = st.integers(min_value=0, max_value=50).map(lambda n: (str(n), Fraction(n)))


def _combine(children):
    def build(op, lhs, rhs):
        (ls, lv), (rs, rv) = lhs, rhs
        if op == "/" and rv == 0:
            return (f"({ls})-({rs})", lv - rv)
        value = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if rv else lv}[op]
        return (f"({ls}){op}({rs})", value)

    return st.builds(build, st.sampled_from("+-*/"), children, children) | children.map(
        lambda t: (f"-({t[0]})", -t[1]))


_expressions = st.recursive(_leaf, _combine, max_leaves=6).filter(lambda t: len(t[0]) <= MAX_TEXT_LENGTH)


@settings(max_examples=150, deadline=None)
@given(_expressions)
def test_random_expressions_evaluate_exactly(expr):
    text, value = expr
    if abs(value) > 1e100:
        return
    assert parse_coefficient(text) == value


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.+-*/() esqrtxE\u2212\u00d7\u00f7_", max_size=60))
def test_random_text_parses_or_raises_tableau_error(text):
    try:
        value = parse_coefficient(text)
    except TableauError as err:
        assert repr(text)[:30].rstrip("'") in str(err) or "longer than" in str(err)
    else:
        assert isinstance(value, (Fraction, float))
        assert math.isfinite(float(value))


# ---------------------------------------------------------------- display in the style written
@pytest.mark.parametrize(("value", "decimal", "text"), [
    (Fraction(-8480655492356989, 10**18), True, "-0.008480655492356989"),
    (Fraction(161, 2000), True, "0.0805"),
    (Fraction(1, 8), False, "1/8"),
    (Fraction(1, 8), True, "0.125"),
    (Fraction(-27, 140), False, "-27/140"),
    (Fraction(5), True, "5"),
    (Fraction(-3), False, "-3"),
])
def test_display_keeps_the_style_written(value, decimal, text):
    from rkcompile.exact import display_coefficient

    assert display_coefficient(value, decimal) == text
    assert parse_coefficient(text) == value  # exact: nothing is rounded


def test_display_rounds_only_what_has_no_exact_text():
    from rkcompile.exact import display_coefficient

    root = (6 + math.sqrt(6)) / 15
    assert display_coefficient(root) == f"{root:.4g}" == "0.5633"
    third = Fraction(161, 3000)  # a decimal coefficient over h = 3 does not terminate
    assert display_coefficient(third, True) == f"{float(third):.4g}"


@pytest.mark.parametrize(("text", "decimal"), [("0.161", True), ("-8.4e-3", True), ("1e-3", True), (".5", True),
                                               ("1/2", False), ("1", False), ("sqrt(2)", False), ("(1+2)/3", False),
                                               (0.5, True), (2, False)])
def test_decimal_text_is_a_decimal_literal(text, decimal):
    from rkcompile.exact import is_decimal_text

    assert is_decimal_text(text) is decimal
