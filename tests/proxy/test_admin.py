from __future__ import annotations

import io

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.urls import reverse

from proxy.admin_support import numbers_from_search
from proxy.api_keys import hash_key
from proxy.models import ApiKey, Call, CallbackDelivery, CallEvent, Conversation, Notification, Recording, Service
from tests.conftest import ALICE
from tests.console import messages_of, service_form, staff_user
from tests.factories import ConversationFactory, ParticipantFactory, VirtualNumberFactory
from virtual_numbers.models import PoolExhaustion, VirtualNumber

pytestmark = pytest.mark.django_db


def test_every_console_page_renders(admin_client, conversation, fake, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    call = Call.objects.create(
        uuid="call-1",
        conversation=conversation,
        service=conversation.service,
        from_number=ALICE,
        to_number="12015550200",
        status="completed",
    )
    CallEvent.objects.create(
        call=call,
        call_uuid="call-1",
        kind="status",
        status="answered",
        dedup_key="e1",
        payload={"from": ALICE, "to": "12015550200", "status": "answered"},
    )
    PoolExhaustion.objects.create(service=conversation.service, country="US")
    urls = [
        reverse("admin:index"),
        reverse("pool-health"),
        reverse("admin:numbers_virtualnumber_changelist"),
        reverse("admin:numbers_virtualnumber_buy"),
        reverse("admin:numbers_virtualnumber_import_owned"),
        reverse("admin:numbers_poolexhaustion_changelist"),
        reverse("admin:numbers_numbercheck_changelist"),
        reverse("admin:proxy_service_changelist"),
        reverse("admin:proxy_service_change", args=[conversation.service_id]),
        reverse("admin:proxy_service_issue_key", args=[conversation.service_id]),
        reverse("admin:proxy_apikey_changelist"),
        reverse("admin:proxy_conversation_changelist"),
        reverse("admin:proxy_conversation_change", args=[conversation.pk]),
        reverse("admin:proxy_conversation_extend", args=[conversation.pk]),
        reverse("admin:proxy_call_changelist"),
        reverse("admin:proxy_call_change", args=[call.pk]),
        reverse("admin:proxy_recording_changelist"),
        reverse("admin:proxy_notification_changelist"),
        reverse("admin:proxy_callbackdelivery_changelist"),
        reverse("admin:admin_logentry_changelist"),
        reverse("admin:auth_user_changelist"),
        reverse("admin:auth_group_changelist"),
    ]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert ALICE not in response.content.decode(), f"{url} shows a real number whole"


def test_conversation_search_by_typed_real_number_shows_it_masked(admin_client, conversation):
    other = ConversationFactory(service=conversation.service, external_id="order-43")
    ParticipantFactory(conversation=other, real_number="12015550103", position=0)
    url = reverse("admin:proxy_conversation_changelist")

    page = admin_client.get(url, {"q": "+1 (201) 555-0101"}).content.decode()

    assert "order-42" in page and "order-43" not in page
    assert "1201****101" in page and ALICE not in page
    assert "order-43" in admin_client.get(url, {"q": "order-43"}).content.decode()
    assert "order-42" in admin_client.get(url, {"q": "2015550102"}).content.decode()  # national, default country


def test_call_search_by_number_and_timeline_masks_payload(admin_client, conversation):
    call = Call.objects.create(
        uuid="abcdef12-call", conversation=conversation, from_number=ALICE, to_number="12015550200"
    )
    CallEvent.objects.create(
        call=call,
        call_uuid=call.uuid,
        kind="status",
        status="ringing",
        dedup_key="x",
        payload={"from": ALICE, "status": "ringing"},
    )
    listing = admin_client.get(reverse("admin:proxy_call_changelist"), {"q": "+12015550101"}).content.decode()
    assert "abcdef12" in listing
    assert "+12015550200" in listing  # pool numbers are ours: shown in full
    detail = admin_client.get(reverse("admin:proxy_call_change", args=[call.pk])).content.decode()
    assert 'id="timeline"' in detail and "ringing" in detail
    assert ALICE not in detail and "1201****101" in detail


def test_call_page_plays_the_recording(admin_client, conversation, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    call = Call.objects.create(uuid="rec-call", conversation=conversation)
    recording = Recording.objects.create(
        recording_uuid="r1", call=call, recording_url="https://example.invalid/r1", status="downloaded"
    )
    recording.file.save("r1.mp3", ContentFile(b"ID3fake-audio"))

    detail = admin_client.get(reverse("admin:proxy_call_change", args=[call.pk])).content.decode()
    audio_url = reverse("admin:proxy_recording_audio", args=[recording.pk])
    assert f'<audio controls preload="none" src="{audio_url}"' in detail
    response = admin_client.get(audio_url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"ID3fake-audio"


def test_call_pages_show_what_the_hook_decided(admin_client, conversation):
    call = Call.objects.create(
        uuid="hooked-call",
        conversation=conversation,
        service=conversation.service,
        from_number=ALICE,
        hook="intercept",
        hook_outcome="blocked",
        hook_status_code=403,
        hook_detail="HTTP 403",
        hook_ms=12,
    )
    detail = admin_client.get(reverse("admin:proxy_call_change", args=[call.pk])).content.decode()
    assert "Intercept: blocked (HTTP 403, 12 ms)" in detail
    listing = admin_client.get(reverse("admin:proxy_call_changelist"), {"hook_outcome": "blocked"}).content.decode()
    assert "Intercept: blocked" in listing and ALICE not in listing
    page = admin_client.get(reverse("admin:proxy_conversation_change", args=[conversation.pk])).content.decode()
    assert "blocked" in page
    assert admin_client.get(reverse("admin:proxy_callhangup_changelist")).status_code == 200


def test_close_from_the_conversation_page_is_logged(admin_client, conversation):
    url = reverse("admin:proxy_conversation_close_one", args=[conversation.pk])
    assert "Close conversation" in admin_client.get(url).content.decode()
    assert Conversation.objects.get(pk=conversation.pk).status == "open"  # GET only asks

    response = admin_client.post(url)

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.status == "closed"
    assert not conversation.participants.filter(active=True).exists()
    page = admin_client.get(reverse("admin:proxy_conversation_change", args=[conversation.pk])).content.decode()
    assert url not in page  # an ended conversation offers no close or extend
    entry = LogEntry.objects.get(object_id=str(conversation.pk))
    assert entry.action_flag == CHANGE and "Closed" in entry.change_message


def test_bulk_close_and_extend(admin_client, conversation):
    old_expiry = conversation.expires_at
    extend = reverse("admin:proxy_conversation_extend", args=[conversation.pk])
    admin_client.post(extend, {"hours": "168"})
    conversation.refresh_from_db()
    assert conversation.expires_at > old_expiry
    assert LogEntry.objects.filter(change_message__startswith="Extended").count() == 1

    admin_client.post(
        reverse("admin:proxy_conversation_changelist"),
        {"action": "close", "_selected_action": [str(conversation.pk)]},
    )
    conversation.refresh_from_db()
    assert conversation.status == "closed"
    response = admin_client.post(extend, {"hours": "1"}, follow=True)
    assert "cannot be extended" in response.content.decode()


def test_issue_key_shows_it_once_and_stores_its_hash(admin_client, service):
    url = reverse("admin:proxy_service_issue_key", args=[service.pk])
    response = admin_client.post(url, {"name": "production"})
    page = response.content.decode()
    key = page.split('id="api-key">')[1].split("<")[0]
    row = ApiKey.objects.get(service=service, name="production")
    assert row.key_hash == hash_key(key) and key not in row.key_hash
    assert "no-store" in response["Cache-Control"]
    assert LogEntry.objects.filter(object_id=str(row.pk), action_flag=ADDITION).exists()

    admin_client.post(reverse("admin:proxy_apikey_changelist"), {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is not None


def test_service_settings_can_be_edited(admin_client, service):
    url = reverse("admin:proxy_service_change", args=[service.pk])
    data = service_form(
        default_country="GB",
        language="en-GB",
        greeting_text="Hello",
        pin_mode="fallback",
        auto_reply_text="",
        intercept_url="",
        out_of_session_url="",
        intercept_on_error="block",
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    service.refresh_from_db()
    assert (service.default_ttl, service.language, service.recording_policy) == (600, "en-GB", "always")
    assert (service.pin_mode, service.pin_prompt_text) == ("fallback", "Your PIN, please.")
    assert (service.intercept_on_error, service.not_allowed_text) == ("block", "Not allowed.")

    # Hook URLs keep the API's rules: https, and an address callbacks may reach.
    refused = admin_client.post(
        url, {**data, "intercept_url": "http://hooks.example.com/x", "out_of_session_url": "https://10.0.0.1/x"}
    )
    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert set(errors) == {"intercept_url", "out_of_session_url"}
    assert "https" in errors["intercept_url"][0]
    service.refresh_from_db()
    assert service.intercept_url == ""


def test_roles(client, conversation, fake):
    operator = staff_user("Operators")
    client.force_login(operator)
    assert client.get(reverse("admin:proxy_conversation_changelist")).status_code == 200
    assert client.get(reverse("pool-health")).status_code == 200
    assert client.get(reverse("admin:numbers_virtualnumber_buy")).status_code == 403
    assert client.get(reverse("admin:proxy_service_issue_key", args=[conversation.service_id])).status_code == 403
    numbers = client.get(reverse("admin:numbers_virtualnumber_changelist")).content.decode()
    assert 'value="release"' not in numbers
    client.post(reverse("admin:proxy_conversation_close_one", args=[conversation.pk]))
    assert Conversation.objects.get(pk=conversation.pk).status == "closed"

    administrator = staff_user("Administrators")
    client.force_login(administrator)
    assert client.get(reverse("admin:numbers_virtualnumber_buy")).status_code == 200
    numbers = client.get(reverse("admin:numbers_virtualnumber_changelist")).content.decode()
    assert 'value="release"' in numbers


def test_setup_roles_is_idempotent_and_resets_drift():
    call_command("setup_roles", stdout=io.StringIO())
    operators = Group.objects.get(name="Operators")
    operators.permissions.add(Permission.objects.get(codename="add_virtualnumber"))
    call_command("setup_roles", stdout=io.StringIO())
    codenames = set(operators.permissions.values_list("codename", flat=True))
    assert "add_virtualnumber" not in codenames
    assert {"view_conversation", "change_conversation", "view_call"} <= codenames
    assert Group.objects.filter(name__in=["Operators", "Administrators"]).count() == 2
    admins = set(Group.objects.get(name="Administrators").permissions.values_list("codename", flat=True))
    assert {"add_virtualnumber", "change_virtualnumber", "add_apikey", "change_service"} <= admins


def test_create_a_service_from_the_console(admin_client):
    data = service_form(
        name="Deliveries",
        slug="deliveries",
        default_country="GB",
        default_ttl=3600,
        cooldown=3600,
        recording_policy="never",
        connect_timeout=45,
        call_time_limit=7200,
        language="en-GB",
    )
    response = admin_client.post(reverse("admin:proxy_service_add"), data)
    assert response.status_code == 302
    created = Service.objects.get(slug="deliveries")
    assert LogEntry.objects.filter(object_id=str(created.pk), action_flag=ADDITION).exists()


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("+44 7400 123456", "447400123456"),
        ("0044 7400 123456", "447400123456"),
        ("(201) 555-0101", "12015550101"),
        ("12015550101", "12015550101"),
    ],
)
def test_numbers_typed_in_search(typed, expected, settings):
    settings.PROXY_DEFAULT_COUNTRY = "US"
    assert expected in numbers_from_search(typed)


def test_non_numbers_are_not_read_as_numbers():
    assert numbers_from_search("order-42") == []
    assert numbers_from_search("12345") == []


def _notification(conversation: Conversation, status: str) -> Notification:
    participant = conversation.participants.get(position=0)
    return Notification.objects.create(
        participant=participant,
        service=conversation.service,
        to_number=participant.real_number,
        from_number="12015550200",
        text="Acme: call +1 201 555 0200",
        status=status,
        attempts=3,
        last_error="Vonage status 6" if status == "failed" else "",
    )


def _callback(service: Service, status: str) -> CallbackDelivery:
    return CallbackDelivery.objects.create(
        service=service,
        event="conversation.opened",
        payload={"id": "e1", "type": "conversation.opened", "data": {}},
        url="https://market.example/hooks",
        status=status,
        attempts=12,
    )


def test_retry_failed_sms_from_the_console(admin_client, conversation):
    failed = _notification(conversation, "failed")
    delivered = _notification(conversation, "delivered")
    changelist = reverse("admin:proxy_notification_changelist")
    assert 'value="retry"' in admin_client.get(changelist).content.decode()

    response = admin_client.post(changelist, {"action": "retry", "_selected_action": [failed.pk, delivered.pk]})

    failed.refresh_from_db()
    delivered.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error) == ("queued", 0, "")
    assert delivered.status == "delivered"
    logged = LogEntry.objects.filter(action_flag=CHANGE, content_type__model="notification")
    assert [(e.object_id, e.change_message) for e in logged] == [(str(failed.pk), "Retried by staff")]
    assert messages_of(response) == ["Retrying 1 SMS. 1 left as they were (not failed, or its conversation ended)."]


def test_failed_sms_of_an_ended_conversation_is_not_retried(admin_client, conversation):
    failed = _notification(conversation, "failed")
    conversation.status = "closed"
    conversation.save(update_fields=["status"])
    response = admin_client.post(
        reverse("admin:proxy_notification_changelist"), {"action": "retry", "_selected_action": [failed.pk]}
    )
    assert Notification.objects.get(pk=failed.pk).status == "failed"
    assert not LogEntry.objects.filter(content_type__model="notification").exists()
    assert messages_of(response) == ["Retrying 0 SMS. 1 left as they were (not failed, or its conversation ended)."]


def test_retry_failed_callbacks_from_the_console(admin_client, service):
    failed = [_callback(service, "failed"), _callback(service, "failed")]
    pending = _callback(service, "pending")
    changelist = reverse("admin:proxy_callbackdelivery_changelist")

    response = admin_client.post(
        changelist, {"action": "retry", "_selected_action": [failed[0].pk, failed[1].pk, pending.pk]}
    )

    assert sorted(CallbackDelivery.objects.values_list("status", "attempts")) == [("pending", 0)] * 2 + [
        ("pending", 12)
    ]
    logged = LogEntry.objects.filter(content_type__model="callbackdelivery", change_message="Retried by staff")
    assert sorted(int(e.object_id) for e in logged) == sorted(d.pk for d in failed)
    assert messages_of(response) == ["Retrying 2 callbacks. 1 left as they were (not failed)."]


def test_retrying_needs_the_change_permission(client, conversation):
    failed = _notification(conversation, "failed")
    client.force_login(staff_user("Operators"))  # may view outboxes, not change them
    changelist = reverse("admin:proxy_notification_changelist")
    assert 'value="retry"' not in client.get(changelist).content.decode()
    client.post(changelist, {"action": "retry", "_selected_action": [failed.pk]})
    assert Notification.objects.get(pk=failed.pk).status == "failed"

    user = User.objects.create_user(username="support", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_notification", "change_notification"]))
    client.force_login(user)
    client.post(changelist, {"action": "retry", "_selected_action": [failed.pk]})
    assert Notification.objects.get(pk=failed.pk).status == "queued"


def test_sidebar_lists_the_console_pages(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    for url in (
        reverse("pool-health"),
        reverse("admin:numbers_virtualnumber_buy"),
        reverse("admin:proxy_notification_changelist"),
    ):
        assert url in page


def test_list_counts_are_per_row_however_many_rows_meet(service, conversation):
    from django.contrib.admin.sites import site
    from django.test import RequestFactory

    from proxy.api_keys import api_key_create

    second = VirtualNumberFactory(service=service, number="12015550201")
    VirtualNumberFactory(service=service, number="12015550202", state=VirtualNumber.State.DRAINING)
    other = ConversationFactory(service=service)
    ParticipantFactory(conversation=other, real_number=ALICE, proxy_number=second, position=0)
    ParticipantFactory(conversation=other, real_number="12015550103", proxy_number=second, position=1)
    ConversationFactory(service=service, status=Conversation.Status.CLOSED)
    for _ in range(3):
        api_key_create(service=service)
    revoked, _ = api_key_create(service=service)
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=conversation.created_at)
    request = RequestFactory().get("/")

    row = site._registry[Service].get_queryset(request).get(pk=service.pk)
    numbers = {n.number: n.open_count for n in site._registry[VirtualNumber].get_queryset(request)}

    # 3 numbers, 2 of them active; 2 open conversations of 3; 3 live keys of 4.
    assert (row.n_numbers, row.n_open, row.n_keys) == (2, 2, 3)
    assert numbers == {"12015550200": 1, "12015550201": 1, "12015550202": 0}
