"""How Vonage writes values, read one way for the whole product.

Vonage sends money and sizes as strings ("0.00450000") or, sometimes, numbers. Anything
else (missing, empty, not a number, NaN, infinite) reads as None, never an error.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation


def vonage_decimal(value: object, *, max_digits: int | None = None, places: int | None = None) -> Decimal | None:
    """The decimal ``value`` holds, or None.

    With ``places`` the value is rounded to that many decimal places; with ``max_digits``
    as well, a value that then needs more digits than a ``DecimalField(max_digits,
    places)`` column holds reads as None too (it could not be stored).
    """
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    text = str(value).strip()
    if not text or len(text) > 100:
        return None
    try:
        result = Decimal(text)
    except InvalidOperation:
        return None
    if not result.is_finite():
        return None
    if places is not None:
        if max_digits is not None and result.adjusted() >= max_digits - places:
            return None
        try:
            result = result.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
        except InvalidOperation:
            return None
        if max_digits is not None and len(result.as_tuple().digits) > max_digits:
            return None
    return result
