"""Kubernetes `resource.Quantity` strings: the canonical formatter and a strict parser.

Pure. Mirrors apimachinery `pkg/api/resource` (quantity.go, suffix.go, amount.go):

* a value is rounded *away from zero* to nano (10^-9), like `ParseQuantity`;
* the canonical form has no fraction digits and the largest exact decimal suffix
  (`n u m "" k M G T P E`): mantissa and exponent are shifted until the exponent is a
  multiple of three (`312.5` -> `312500m`, `0.0001` -> `100u`, `1.5e6` -> `1500k`);
* beyond exa (exponent > 18) no DecimalSI suffix exists, so the value is written in the
  DecimalExponent form Go emits (`1e21`, `1500e18`); `ParseQuantity` reads it back exactly.
  (Go's own DecimalSI formatter would drop the exponent here; the HPA's `MilliValue`
  overflows int64 long before, past ~9.2e15, see `MAX_SAFE_MILLI_VALUE`.)
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_UP, Decimal, InvalidOperation

__all__ = [
    "MAX_SAFE_MILLI_VALUE",
    "format_quantity",
    "milli_value",
    "parse_quantity",
]

#: Largest |value| whose `MilliValue()` (value x 1000) still fits an int64.
MAX_SAFE_MILLI_VALUE = Decimal(2**63 - 1) / 1000

_NANO = Decimal("1e-9")
_DECIMAL_SUFFIX_BY_EXPONENT = {
    -9: "n",
    -6: "u",
    -3: "m",
    0: "",
    3: "k",
    6: "M",
    9: "G",
    12: "T",
    15: "P",
    18: "E",
}
_DECIMAL_EXPONENT_BY_SUFFIX = {v: k for k, v in _DECIMAL_SUFFIX_BY_EXPONENT.items()}
_BINARY_EXPONENT_BY_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_QUANTITY_RE = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>[numkMGTPE]?|[KMGTPE]i|[eE][+-]?[0-9]+)"
)


def _to_decimal(value: float | int | Decimal) -> Decimal:
    if isinstance(value, bool):
        raise TypeError("quantity value must be a number, not bool")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"quantity value must be finite, got {value!r}")
        # repr() is the shortest string that round-trips: 0.0001 stays 0.0001.
        result = Decimal(repr(value))
    else:
        raise TypeError(f"quantity value must be a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"quantity value must be finite, got {value!r}")
    return result


def format_quantity(value: float | int | Decimal) -> str:
    """The canonical apimachinery string for `value` (DecimalSI), e.g. `312.5` -> `"312500m"`."""
    amount = _to_decimal(value)
    if amount == 0:
        return "0"
    negative = amount < 0
    amount = abs(amount)
    if amount.as_tuple().exponent < -9:  # type: ignore[operator]
        amount = amount.quantize(_NANO, rounding=ROUND_UP)
    _sign, digits, exponent = amount.normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)))
    while exponent % 3 != 0:
        mantissa *= 10
        exponent -= 1
    suffix = _DECIMAL_SUFFIX_BY_EXPONENT.get(exponent)
    if suffix is None:  # only exponents > 18 are left after rounding to nano
        suffix = f"e{exponent}"
    return f"{'-' if negative else ''}{mantissa}{suffix}"


def parse_quantity(text: str) -> Decimal:
    """Parse a quantity string (`"1500m"`, `"2Ki"`, `"1e3"`) exactly, rounded up to nano.

    Raises ValueError naming the problem for anything `ParseQuantity` rejects (`"K"`,
    `"1.5.0"`, `"1e1.5"`, spaces, `"nan"`, `""`).
    """
    if not isinstance(text, str):
        raise TypeError(f"quantity must be a string, got {type(text).__name__}")
    match = _QUANTITY_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"quantity {text!r} does not match <sign><number><suffix> "
            "(suffix one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or e<int>)"
        )
    number = match["number"]
    if number.endswith("."):
        number += "0"
    if number.startswith("."):
        number = "0" + number
    try:
        amount = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
        raise ValueError(f"quantity {text!r} has an invalid number") from exc
    suffix = match["suffix"]
    if suffix in _BINARY_EXPONENT_BY_SUFFIX:
        amount *= 2 ** _BINARY_EXPONENT_BY_SUFFIX[suffix]
    elif suffix in _DECIMAL_EXPONENT_BY_SUFFIX:
        amount = amount.scaleb(_DECIMAL_EXPONENT_BY_SUFFIX[suffix])
    else:
        amount = amount.scaleb(int(suffix[1:]))
    if amount != 0 and amount.as_tuple().exponent < -9:  # type: ignore[operator]
        amount = amount.quantize(_NANO, rounding=ROUND_UP)
    return -amount if match["sign"] == "-" else amount


def milli_value(text: str) -> int:
    """`Quantity.MilliValue()`: value x 1000 rounded away from zero, what the HPA sums."""
    return int((parse_quantity(text) * 1000).to_integral_value(rounding=ROUND_UP))
