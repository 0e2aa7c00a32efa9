"""One reading of Vonage's decimals for the whole product."""

from __future__ import annotations

from decimal import Decimal

import pytest

from telephony.values import vonage_decimal


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0.00450000", Decimal("0.0045")), (3, Decimal(3)), (0.5, Decimal("0.5")), (" 1.20 ", Decimal("1.2"))],
)
def test_reads_what_vonage_writes(raw, expected):
    assert vonage_decimal(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "x", "NaN", "Infinity", "-inf", True, [], {}, "1" * 101])
def test_anything_else_is_none(raw):
    assert vonage_decimal(raw) is None


def test_column_fit_rounds_then_refuses_what_the_column_cannot_hold():
    assert vonage_decimal("0.123456789", max_digits=14, places=8) == Decimal("0.12345679")
    assert vonage_decimal("999999.99999999", max_digits=14, places=8) == Decimal("999999.99999999")
    # Rounds up past six integer digits: a 14-digit column with 8 places cannot hold it.
    assert vonage_decimal("999999.999999999", max_digits=14, places=8) is None
    assert vonage_decimal("1e20", max_digits=14, places=8) is None
    assert vonage_decimal("1e20") == Decimal("1e20")
