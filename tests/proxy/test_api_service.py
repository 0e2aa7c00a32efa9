"""GET and PATCH /api/v1/service, and rotating the callback secret."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from proxy.api_keys import api_key_create
from proxy.callbacks import signature_header
from proxy.models import Service
from tests.factories import ServiceFactory

URL = "/api/v1/service"
CONTRACT_FIELDS = {
    "slug",
    "name",
    "default_country",
    "default_ttl",
    "cooldown",
    "rate_limit",
    "callback_url",
    "intercept_url",
    "out_of_session_url",
    "intercept_on_error",
}


@pytest.fixture
def public_dns():
    """Every host resolves to a public address (no network in tests)."""

    def getaddrinfo(host, port, *args, **kwargs):
        import socket

        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]

    with mock.patch("proxy.safe_http.socket.getaddrinfo", side_effect=getaddrinfo):
        yield


def test_get_shows_the_keys_own_service_and_never_its_secret(api, service):
    service.callback_secret = "whsec_hidden"
    service.save()
    ServiceFactory(slug="other", name="Other", intercept_url="https://other.example.com/x")
    response = api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= CONTRACT_FIELDS
    assert body["slug"] == "acme" and body["name"] == "Acme Rides"
    assert body["intercept_url"] == "" and body["intercept_on_error"] == "allow"
    assert body["call_time_limit"] == service.call_time_limit and body["ring_timeout"] == service.connect_timeout
    assert "whsec_hidden" not in response.content.decode()


def test_patch_changes_only_what_is_given(api, service, public_dns):
    response = api.patch(
        URL,
        {
            "intercept_url": "https://hooks.example.com/intercept",
            "out_of_session_url": "https://hooks.example.com/oos",
            "intercept_on_error": "block",
            "cooldown": 0,
            "ring_timeout": 30,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["intercept_url"] == "https://hooks.example.com/intercept"
    assert body["intercept_on_error"] == "block" and body["cooldown"] == 0 and body["ring_timeout"] == 30
    service.refresh_from_db()
    assert (service.out_of_session_url, service.connect_timeout, service.name) == (
        "https://hooks.example.com/oos",
        30,
        "Acme Rides",
    )
    assert api.patch(URL, {"intercept_url": ""}, format="json").json()["intercept_url"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"intercept_url": "http://hooks.example.com/x"}, "intercept_url"),  # not https
        ({"out_of_session_url": "https://10.0.0.5/x"}, "out_of_session_url"),  # a private address
        ({"callback_url": "https://127.0.0.1/x"}, "callback_url"),
        ({"intercept_url": "ftp://example.com/x"}, "intercept_url"),
        ({"intercept_on_error": "maybe"}, "intercept_on_error"),
        ({"default_country": "XX"}, "default_country"),
        ({"default_ttl": 0}, "default_ttl"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"ring_timeout": 1000}, "ring_timeout"),
        ({"call_time_limit": 7201}, "call_time_limit"),
        ({"name": ""}, "name"),
        ({"pin_mod": "always"}, "pin_mod"),  # a typo is not a silent no-op
    ],
)
def test_bad_fields_are_named_and_nothing_changes(api, service, settings, body, field):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    response = api.patch(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Service.objects.get(pk=service.pk).updated_at == service.updated_at


def test_one_bad_url_writes_nothing(api, service, public_dns):
    response = api.patch(URL, {"name": "Renamed", "intercept_url": "http://hooks.example.com/x"}, format="json")
    assert response.status_code == 400 and set(response.json()) == {"intercept_url"}
    assert Service.objects.get(pk=service.pk).name == "Acme Rides"


def test_http_and_private_hook_urls_are_allowed_with_the_setting(api, settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    response = api.patch(URL, {"intercept_url": "http://127.0.0.1:9000/hook"}, format="json")
    assert response.status_code == 200


def test_slug_is_read_only(api, service):
    response = api.patch(URL, {"slug": "renamed"}, format="json")
    assert response.status_code == 200 and response.json()["slug"] == "acme"


def test_the_service_needs_a_key(client, db):
    assert client.get(URL).status_code == 401


def test_rotating_the_secret_shows_it_once_and_signs_with_both_for_a_day(api, service):
    service.callback_secret = "whsec_old"
    service.save()
    response = api.post(f"{URL}/callback-secret")
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    secret = response.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    assert secret not in api.get(URL).content.decode()
    service.refresh_from_db()
    assert (service.callback_secret, service.callback_secret_previous) == (secret, "whsec_old")
    now = timezone.now()
    both = signature_header(service=service, timestamp=1, body=b"{}", now=now)
    assert both is not None and len(both.split(",")) == 2
    later = signature_header(service=service, timestamp=1, body=b"{}", now=now + timedelta(hours=24, seconds=1))
    assert later is not None and len(later.split(",")) == 1


def test_a_first_secret_has_nothing_to_sign_beside_it(api, service):
    secret = api.post(f"{URL}/callback-secret").json()["secret"]
    service.refresh_from_db()
    assert service.callback_secret == secret and service.callback_secret_previous == ""
    header = signature_header(service=service, timestamp=1, body=b"{}")
    assert header is not None and "," not in header


def test_another_services_key_sees_its_own(api, service):
    other = ServiceFactory(slug="other", name="Other")
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(service=other)[1]}")
    assert client.get(URL).json()["slug"] == "other"
    assert client.post(f"{URL}/callback-secret").status_code == 201
    service.refresh_from_db()
    assert service.callback_secret == ""
