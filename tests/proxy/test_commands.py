"""create_api_key and add_numbers."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from proxy.models import ApiKey, Service
from tests.factories import ServiceFactory, VirtualNumberFactory
from virtual_numbers.models import VirtualNumber


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- create_api_key ----------------------------------------------------------------------------------


def test_create_api_key_creates_the_service_and_prints_a_working_key(db):
    cache.clear()
    output = run("create_api_key", "demo-rides", "--name", "ci", "--service-name", "Demo Rides")

    key = output.strip().splitlines()[-1]
    service = Service.objects.get(slug="demo-rides")
    assert service.name == "Demo Rides"
    assert ApiKey.objects.get(service=service).name == "ci"
    assert key.startswith("mk_") and " " not in key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/conversations").status_code == 200


def test_create_api_key_reuses_an_existing_service(db):
    service = ServiceFactory(slug="acme", name="Acme")

    first = run("create_api_key", "acme").strip().splitlines()[-1]
    second = run("create_api_key", "acme").strip().splitlines()[-1]

    assert first != second
    assert Service.objects.filter(slug="acme").count() == 1
    assert service.api_keys.count() == 2
    service.refresh_from_db()
    assert service.name == "Acme"


def test_create_api_key_defaults_the_service_name_from_the_slug(db):
    run("create_api_key", "quick-eats")

    assert Service.objects.get(slug="quick-eats").name == "Quick Eats"


def test_create_api_key_rejects_a_bad_slug(db):
    with pytest.raises(CommandError):
        run("create_api_key", "not a slug")
    assert not Service.objects.exists()


# --- add_numbers -------------------------------------------------------------------------------------


def test_add_numbers_registers_normalised_numbers_with_their_country(service):
    output = run("add_numbers", "--service", "acme", "+1 201-555-0300", "447400000123", "+1 (201) 555-0301")

    numbers = {n.number: n for n in VirtualNumber.objects.filter(service=service)}
    assert set(numbers) == {"12015550300", "447400000123", "12015550301"}
    assert numbers["447400000123"].country == "GB"
    assert numbers["12015550300"].country == "US"
    assert all(n.voice and n.sms and n.state == "active" and n.number_type == "mobile-lvn" for n in numbers.values())
    assert "3 added" in output


def test_add_numbers_is_idempotent(service):
    run("add_numbers", "--service", "acme", "+12015550300")

    output = run("add_numbers", "--service", "acme", "+12015550300", "+12015550301")

    assert VirtualNumber.objects.filter(service=service).count() == 2
    assert "1 added" in output and "1 already there" in output


def test_add_numbers_type_and_no_sms(service):
    run("add_numbers", "--service", "acme", "--type", "landline", "--no-sms", "+12015550300")

    number = VirtualNumber.objects.get(number="12015550300")
    assert (number.number_type, number.sms, number.voice) == ("landline", False, True)


def test_add_numbers_refuses_a_number_in_another_pool(service):
    VirtualNumberFactory(number="12015550300", service=ServiceFactory(slug="other"))

    with pytest.raises(CommandError, match="another service"):
        run("add_numbers", "--service", "acme", "+12015550301", "+12015550300")

    assert not VirtualNumber.objects.filter(service=service).exists()


def test_add_numbers_takes_an_unassigned_or_released_number(service):
    VirtualNumberFactory(number="12015550300", service=None)
    VirtualNumberFactory(number="12015550301", service=service, state="released")

    run("add_numbers", "--service", "acme", "+12015550300", "+12015550301")

    assert set(VirtualNumber.objects.filter(service=service, state="active").values_list("number", flat=True)) == {
        "12015550300",
        "12015550301",
    }


def test_add_numbers_rejects_invalid_numbers_and_adds_none(service):
    with pytest.raises(CommandError, match="Nothing added"):
        run("add_numbers", "--service", "acme", "+12015550300", "+44 7700 900123")

    assert not VirtualNumber.objects.exists()


def test_add_numbers_needs_an_existing_service(db):
    with pytest.raises(CommandError, match="No service"):
        run("add_numbers", "--service", "nope", "+12015550300")
