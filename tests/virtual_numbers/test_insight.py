"""Number validation: Number Insight through the provider, cached a day, invalid numbers close conversations."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from telephony.registry import get_provider
from tests.conftest import ALICE, BOB
from virtual_numbers.insight import number_check_get, number_checks_prune
from virtual_numbers.models import NumberCheck

pytestmark = pytest.mark.django_db


def _spy():
    provider = get_provider()
    return mock.patch.object(provider, "number_insight", wraps=provider.number_insight)


def test_a_check_is_stored_with_country_and_type():
    check = number_check_get(number=ALICE)
    assert check.valid is True
    assert check.country == "US"
    assert check.number_type in {"mobile", "landline"}
    assert NumberCheck.objects.filter(number=ALICE).count() == 1


def test_the_same_number_is_not_looked_up_again_within_a_day():
    now = timezone.now()
    with _spy() as insight:
        number_check_get(number=ALICE, now=now)
        number_check_get(number=ALICE, now=now + timedelta(hours=23))
        assert insight.call_count == 1
        number_check_get(number=ALICE, now=now + timedelta(hours=25))
        assert insight.call_count == 2
    assert NumberCheck.objects.filter(number=ALICE).count() == 1


def test_old_checks_are_pruned():
    NumberCheck.objects.create(number=ALICE, valid=True, checked_at=timezone.now() - timedelta(days=40))
    NumberCheck.objects.create(number=BOB, valid=True)
    assert number_checks_prune() == 1
    assert list(NumberCheck.objects.values_list("number", flat=True)) == [BOB]
