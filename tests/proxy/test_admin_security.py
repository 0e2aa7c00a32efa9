"""The console under issue 18: secrets write-only, pages for the right role, no 500s, no real numbers in URLs."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from proxy.models import Service
from tests.console import service_form, staff_user

pytestmark = pytest.mark.django_db

SECRET = "whsec-marketplace-0123456789abcdef"


# A public address written as one: saving checks where a URL leads, and tests resolve no names.
MARKETPLACE = "https://93.184.216.34/masked"


@pytest.fixture
def with_secret(service) -> Service:
    service.callback_url = MARKETPLACE
    service.callback_secret = SECRET
    service.save()
    return service


@pytest.mark.parametrize("role", ["Operators", "Administrators"])
def test_no_role_reads_the_callback_secret(client, with_secret, role):
    client.force_login(staff_user(role))
    page = client.get(reverse("admin:proxy_service_change", args=[with_secret.pk]))
    assert page.status_code == 200
    assert SECRET not in page.content.decode()


def test_a_superuser_does_not_read_it_either(admin_client, with_secret):
    page = admin_client.get(reverse("admin:proxy_service_change", args=[with_secret.pk]))
    assert page.status_code == 200
    assert SECRET not in page.content.decode()


def test_saving_without_typing_a_secret_keeps_the_old_one(admin_client, with_secret):
    url = reverse("admin:proxy_service_change", args=[with_secret.pk])
    response = admin_client.post(url, service_form(callback_url=with_secret.callback_url, default_ttl=900))
    assert response.status_code == 302, response.content.decode()[:3000]
    with_secret.refresh_from_db()
    assert (with_secret.callback_secret, with_secret.default_ttl) == (SECRET, 900)


def test_a_typed_secret_replaces_the_old_one(admin_client, with_secret):
    url = reverse("admin:proxy_service_change", args=[with_secret.pk])
    data = service_form(callback_url=with_secret.callback_url, callback_secret="a-new-secret-of-some-length")
    assert admin_client.post(url, data).status_code == 302
    with_secret.refresh_from_db()
    assert with_secret.callback_secret == "a-new-secret-of-some-length"
    # As a rotation over the API: the old secret keeps signing beside it for a day.
    assert with_secret.callback_secret_previous == SECRET
    assert with_secret.callback_secret_rotated_at is not None


def test_a_callback_url_needs_a_secret(admin_client, service):
    url = reverse("admin:proxy_service_change", args=[service.pk])
    response = admin_client.post(url, service_form(callback_url=MARKETPLACE))
    assert response.status_code == 200
    assert "callback_secret" in response.context["adminform"].form.errors
    service.refresh_from_db()
    assert service.callback_url == ""


def test_a_new_service_with_a_callback_url_needs_a_secret(admin_client):
    data = service_form(slug="rides", callback_url=MARKETPLACE)
    response = admin_client.post(reverse("admin:proxy_service_add"), data)
    assert response.status_code == 200
    assert "callback_secret" in response.context["adminform"].form.errors
    assert not Service.objects.filter(slug="rides").exists()


# --- Pages for the right role only ---------------------------------------------------------------


def _plain_staff():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("plain-staff", password="pw-12345-long", is_staff=True)


def test_pool_health_needs_the_pool_view_permission(client):
    client.force_login(_plain_staff())
    assert client.get(reverse("pool-health")).status_code == 403
    client.force_login(staff_user("Operators"))
    assert client.get(reverse("pool-health")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "/sandbox/", {}),
        ("post", "/sandbox/", {"caller": "12015550101", "proxy_number": "12015550200", "outcome": "busy"}),
        ("post", "/sandbox/failures", {"path": "/sms/json", "mode": "throttle", "count": 1}),
        ("post", "/sandbox/reset", {}),
    ],
)
@pytest.mark.parametrize("who", ["plain staff", "Operators"])
def test_the_sandbox_pages_are_for_administrators_only(client, settings, method, path, data, who):
    from telephony.models import SandboxFailure

    settings.VONAGE_PROVIDER = "sandbox"
    client.force_login(_plain_staff() if who == "plain staff" else staff_user(who))
    response = getattr(client, method)(path, {**data, "duration": 5} if data else data)
    assert response.status_code == 403
    assert not SandboxFailure.objects.exists()


def test_administrators_may_use_the_sandbox_pages(client, settings):
    settings.VONAGE_PROVIDER = "sandbox"
    client.force_login(staff_user("Administrators"))
    assert client.get("/sandbox/").status_code == 200
    response = client.post("/sandbox/failures", {"path": "/sms/json", "mode": "throttle", "count": 1})
    assert response.status_code == 302


def test_health_shows_no_exception_text_to_strangers(client, settings, monkeypatch):
    def broken() -> None:
        raise RuntimeError("could not connect to db.internal.example:5432")

    settings.REDIS_URL = ""
    monkeypatch.setattr("config.health._database", broken)
    for who in (None, _plain_staff()):
        if who is not None:
            client.force_login(who)
        response = client.get("/health")
        assert response.status_code == 503
        assert "db.internal.example" not in response.content.decode()
        assert response.json()["checks"]["database"]["ok"] is False
    client.force_login(staff_user("Operators"))
    assert "db.internal.example" in client.get("/health").content.decode()


# --- Real numbers stay out of URLs -----------------------------------------------------------------


@pytest.mark.parametrize(
    "changelist",
    [
        "admin:proxy_conversation_changelist",
        "admin:proxy_call_changelist",
        "admin:proxy_message_changelist",
        "admin:proxy_messagecontact_changelist",
        "admin:proxy_pincall_changelist",
    ],
)
def test_the_search_form_posts_so_a_typed_number_never_reaches_a_url(admin_client, conversation, changelist):
    page = admin_client.get(reverse(changelist)).content.decode()
    form = page.split('id="changelist-search"', 1)[1].split(">", 1)[0]
    assert 'method="post"' in form


def test_a_posted_number_search_redirects_to_a_url_without_it_and_finds_the_conversation(admin_client, conversation):
    from proxy.models import Call
    from tests.conftest import ALICE

    Call.objects.create(uuid="abcdef12-call", conversation=conversation, from_number=ALICE, to_number="12015550200")
    for name, expected in (("conversation", "order-42"), ("call", "abcdef12")):
        url = reverse(f"admin:proxy_{name}_changelist")
        target = f"{url}?status=open" if name == "conversation" else url
        response = admin_client.post(target, {"q": "+1 (201) 555-0101"})
        assert response.status_code == 302
        location = response["Location"]
        assert "0101" not in location and "555" not in location
        page = admin_client.get(location).content.decode()
        assert expected in page
        assert ALICE not in page and "555-0101" not in page and "5550101" not in page


def test_a_posted_text_search_is_an_ordinary_get(admin_client, conversation):
    url = reverse("admin:proxy_conversation_changelist")
    response = admin_client.post(url, {"q": "order-42"})
    assert response.status_code == 302
    assert "q=order-42" in response["Location"]
    assert "order-42" in admin_client.get(response["Location"]).content.decode()


def test_a_search_token_of_another_session_finds_nothing(client, admin_client, conversation, django_user_model):
    url = reverse("admin:proxy_conversation_changelist")
    location = admin_client.post(url, {"q": "+12015550101"})["Location"]
    other = django_user_model.objects.create_superuser("other", "o@example.com", "pw-12345-long")
    client.force_login(other)
    page = client.get(location)
    assert page.status_code == 200 and page.context["cl"].result_count == 0
    assert "order-42" not in page.content.decode()


# --- Lists that stay cheap on a big table -----------------------------------------------------------


def _indexed_leading_columns(model) -> set[str]:
    leading = {field.name for field in model._meta.fields if field.db_index or field.unique or field.primary_key}
    for index in model._meta.indexes:
        if index.condition is None:
            leading.add(index.fields[0].lstrip("-"))
    return leading


@pytest.mark.parametrize("name", ["conversation", "call"])
def test_changelists_sort_only_on_indexed_columns_and_count_without_joins(admin_client, conversation, name):
    from django.contrib import admin as django_admin
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from proxy.models import Call

    Call.objects.create(uuid="call-1", conversation=conversation)
    model_admin = django_admin.site._registry[Call if name == "call" else type(conversation)]
    indexed = _indexed_leading_columns(model_admin.model)
    url = reverse(f"admin:proxy_{name}_changelist")
    for position, column in enumerate(model_admin.list_display):
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url, {"o": str(position)}).status_code == 200
        page = f'SELECT "proxy_{name}".'
        listing = [q["sql"] for q in captured if q["sql"].startswith(page) and "ORDER BY" in q["sql"]]
        order_by = listing[-1].rsplit("ORDER BY", 1)[1]
        ordered = {c for c in indexed if f'"{c}"' in order_by or f'"{c}_id"' in order_by}
        assert ordered, (column, order_by)
        unindexed = [f for f in model_admin.model._meta.fields if f'"{f.column}"' in order_by and f.name not in indexed]
        assert not unindexed, (column, order_by)
    with CaptureQueriesContext(connection) as captured:
        admin_client.get(url, {"status": "open"} if name == "conversation" else {"status": "started"})
    scans = [q["sql"].upper() for q in captured if q["sql"].upper().startswith(("SELECT COUNT(", "SELECT MIN("))]
    assert scans and all("JOIN" not in sql and "GROUP BY" not in sql for sql in scans), scans
    assert model_admin.show_full_result_count is False


@pytest.mark.parametrize(("field", "value"), [("connect_timeout", 0), ("connect_timeout", 121), ("call_time_limit", 0)])
def test_the_service_page_keeps_the_apis_ring_and_call_limits(admin_client, service, field, value):
    """The bounds live on the model: a service the API would refuse cannot be saved here."""
    url = reverse("admin:proxy_service_change", args=[service.pk])
    response = admin_client.post(url, service_form(**{field: value}))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    service.refresh_from_db()
    assert getattr(service, field) != value


def test_texts_opt_outs_and_pin_calls_are_found_by_a_posted_number_kept_out_of_the_url(admin_client, service, pool):
    from proxy.models import Message, MessageContact, PinCall
    from tests.conftest import ALICE

    Message.objects.create(service=service, kind="inbound", from_number=ALICE, to_number=pool[0], text="hi")
    MessageContact.objects.create(service=service, real_number=ALICE, opted_out=True, opted_out_at=timezone.now())
    PinCall.objects.create(service=service, call_uuid="pin-call-1", caller=ALICE, proxy_number=pool[0])
    for name in ("message", "messagecontact", "pincall"):
        response = admin_client.post(reverse(f"admin:proxy_{name}_changelist"), {"q": "+1 (201) 555-0101"})
        assert response.status_code == 302
        assert "0101" not in response["Location"] and "555" not in response["Location"]
        page = admin_client.get(response["Location"])
        assert page.status_code == 200 and page.context["cl"].result_count == 1, name
