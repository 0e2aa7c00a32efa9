from __future__ import annotations

import phonenumbers
import pytest

from telephony.sandbox.inventory import INVENTORY_SIZE, for_sale_lookup, inventory


@pytest.mark.parametrize("country", ["US", "GB", "DE", "FR", "NL", "ES", "IT", "CA", "AU"])
def test_every_number_for_sale_is_valid_and_in_its_country(country):
    numbers = inventory(country)
    assert len(numbers) == INVENTORY_SIZE
    assert len({n.msisdn for n in numbers}) == INVENTORY_SIZE
    for number in numbers:
        parsed = phonenumbers.parse("+" + number.msisdn)
        assert phonenumbers.is_valid_number(parsed), number.msisdn
        assert phonenumbers.region_code_for_number(parsed) == country


def test_inventory_is_the_same_every_time():
    inventory.cache_clear()
    first = inventory("GB")
    inventory.cache_clear()
    assert inventory("GB") == first


def test_us_numbers_stay_clear_of_the_people_block():
    assert all(not n.msisdn.startswith("120155501") for n in inventory("US"))


def test_lookup_finds_a_number_for_sale_and_not_others():
    assert for_sale_lookup("12015550300").country == "US"
    assert for_sale_lookup("12015550101") is None
    assert for_sale_lookup("garbage") is None
