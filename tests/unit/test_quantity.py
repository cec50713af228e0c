"""Quantity strings: the canonical table (fractions, suffix choice, zero, negatives, huge and
tiny values, nano rounding), the parser's grammar, MilliValue, and round-trips."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.core.quantity import format_quantity, milli_value, parse_quantity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(0.0001, "100u", id="0.0001 is 100 micro"),
        pytest.param(312.5, "312500m", id="fraction goes to milli"),
        pytest.param(1.5e6, "1500k", id="1.5e6 largest exact suffix k"),
        pytest.param(1_500_000, "1500k", id="int 1500000"),
        pytest.param(0, "0", id="zero"),
        pytest.param(0.0, "0", id="float zero"),
        pytest.param(-0.0, "0", id="negative zero"),
        pytest.param(1, "1", id="one"),
        pytest.param(1.5, "1500m", id="1.5"),
        pytest.param(-312.5, "-312500m", id="negative fraction"),
        pytest.param(-2, "-2", id="negative int"),
        pytest.param(-1.5e6, "-1500k", id="negative large"),
        pytest.param(1000, "1k", id="1000 is 1k"),
        pytest.param(10, "10", id="10 stays"),
        pytest.param(100, "100", id="100 stays"),
        pytest.param(1e9, "1G", id="giga"),
        pytest.param(1e12, "1T", id="tera"),
        pytest.param(1e15, "1P", id="peta"),
        pytest.param(1e18, "1E", id="exa"),
        pytest.param(1.5e21, "1500E", id="beyond exa still a multiple of 3 below"),
        pytest.param(1e21, "1e21", id="very large uses the exponent form"),
        pytest.param(2.5e24, "2500e21", id="very large mantissa"),
        pytest.param(1e-9, "1n", id="nano"),
        pytest.param(1e-12, "1n", id="below nano rounds up to 1n"),
        pytest.param(-1e-12, "-1n", id="negative below nano rounds away from zero"),
        pytest.param(1.0000000001, "1000000001n", id="rounds up at nano"),
        pytest.param(0.1 + 0.2, "300000001n", id="binary float noise kept exactly"),
        pytest.param(Decimal("0.25"), "250m", id="decimal input"),
        pytest.param(123456789.123, "123456789123m", id="long mantissa"),
    ],
)
def test_canonical_form(value, expected):
    assert format_quantity(value) == expected


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), Decimal("NaN")])
def test_non_finite_values_are_rejected(bad):
    with pytest.raises(ValueError, match="finite"):
        format_quantity(bad)


def test_bool_is_not_a_number():
    with pytest.raises(TypeError):
        format_quantity(True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1500m", Decimal("1.5")),
        ("100u", Decimal("0.0001")),
        ("1e3", Decimal(1000)),
        ("15E-1", Decimal("1.5")),
        ("1E", Decimal(10**18)),
        ("2Ki", Decimal(2048)),
        ("1Mi", Decimal(2**20)),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("-1.5k", Decimal(-1500)),
        ("+3", Decimal(3)),
        ("1e21", Decimal("1e21")),
        ("0.0000000001", Decimal("1e-9")),
    ],
)
def test_parse(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("bad", ["K", "1.5.0", "1e1.5", " 1", "1 ", "nan", "inf", "", "1Kb", "m"])
def test_parse_rejects_what_apimachinery_rejects(bad):
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(bad)


@pytest.mark.parametrize(
    ("text", "milli"),
    [("1500m", 1500), ("100u", 1), ("-100u", -1), ("4", 4000), ("312500m", 312500)],
)
def test_milli_value_rounds_away_from_zero(text, milli):
    assert milli_value(text) == milli


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30)


@given(finite)
def test_round_trip_is_the_nano_ceiling(value):
    text = format_quantity(value)
    parsed = parse_quantity(text)
    exact = Decimal(repr(value))
    assert abs(parsed) >= abs(exact)
    assert abs(parsed - exact) <= Decimal("1e-9")
    assert "." not in text
    assert format_quantity(parsed) == text
