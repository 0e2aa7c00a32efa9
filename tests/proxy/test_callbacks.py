"""Marketplace callbacks: signed POSTs from the outbox, retries for a day, no private addresses."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
import requests
from django.utils import timezone

from proxy import safe_http, tasks
from proxy.callbacks import callback_signature
from proxy.delivery.callbacks import callback_deliver
from proxy.models import Call, CallbackDelivery, Conversation
from proxy.safe_http import UnsafeCallbackUrl, callback_url_check
from proxy.services import conversation_close, conversation_create, conversations_expire_due
from tests.conftest import ALICE, BOB
from tests.factories import ConversationFactory, ServiceFactory

SECRET = "marketplace-secret"


class Receiver:
    """A marketplace endpoint on 127.0.0.1 that records what it gets and answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def local_callbacks(settings, receiver, service):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    service.callback_url = receiver.url
    service.callback_secret = SECRET
    service.save()
    return receiver


def _verify(request: dict) -> dict:
    timestamp = request["headers"]["X-Signature-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Signature"] == f"sha256={expected}"
    return json.loads(request["body"])


# --- Signing and URL safety (no database) ------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"a":1}'
    expected = hmac.new(b"s", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert callback_signature(secret="s", timestamp=1700000000, body=body) == f"sha256={expected}"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8000/x",
        "http://10.1.2.3/x",
        "http://192.168.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://100.64.0.1/x",
        "http://0.0.0.0/x",
        "ftp://example.com/x",
        "http:///nohost",
    ],
)
def test_private_loopback_and_odd_urls_are_refused(url, settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(UnsafeCallbackUrl):
        callback_url_check(url)


def _fake_dns(*addresses: str):
    def getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    return mock.patch("proxy.safe_http.socket.getaddrinfo", side_effect=getaddrinfo)


def test_every_resolved_address_is_checked(settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    with _fake_dns("93.184.215.14"):
        callback_url_check("https://hooks.example.com/x")
    with _fake_dns("93.184.215.14", "10.0.0.5"), pytest.raises(UnsafeCallbackUrl, match=r"10\.0\.0\.5"):
        callback_url_check("https://hooks.example.com/x")


def test_the_connection_itself_refuses_a_private_address(settings, receiver):
    """A host that resolved to a public address at check time and to loopback at connect time."""
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(requests.ConnectionError, match="non-public"), safe_http.guarded_session() as session:
        session.post(receiver.url, data=b"{}", timeout=2)
    assert receiver.requests == []


def test_private_networks_can_be_allowed_by_setting(settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    callback_url_check("http://127.0.0.1:9/x")


# --- Outbox rows from domain events ------------------------------------------------------------


def _open(service):
    return conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)


@pytest.mark.django_db
def test_no_callback_url_means_no_rows(service, pool):
    conversation = _open(service)
    conversation_close(conversation=conversation)
    assert not CallbackDelivery.objects.exists()


@pytest.mark.django_db
def test_open_and_close_post_signed_events(local_callbacks, service, pool, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        conversation = _open(service)
    with django_capture_on_commit_callbacks(execute=True):
        conversation_close(conversation=conversation)
    bodies = [_verify(r) for r in local_callbacks.requests]
    assert [b["type"] for b in bodies] == ["conversation.opened", "conversation.closed"]
    assert bodies[1]["data"]["conversation"]["id"] == str(conversation.pk)
    assert bodies[1]["data"]["conversation"]["status"] == "closed"
    assert local_callbacks.requests[0]["headers"]["X-Callback-Event"] == "conversation.opened"
    assert ALICE not in local_callbacks.requests[0]["body"].decode()
    deliveries = CallbackDelivery.objects.order_by("created_at", "pk")
    assert [(d.status, d.attempts, d.last_status_code) for d in deliveries] == [("delivered", 1, 200)] * 2


@pytest.mark.django_db
def test_expiry_sweep_calls_back_each_expired_conversation(
    local_callbacks, service, django_capture_on_commit_callbacks
):
    past = timezone.now() - timedelta(minutes=1)
    expired = [ConversationFactory(service=service, expires_at=past) for _ in range(3)]
    ConversationFactory(service=service)  # still open
    ConversationFactory(service=ServiceFactory(), expires_at=past)  # no callback URL
    with django_capture_on_commit_callbacks(execute=True):
        assert conversations_expire_due(batch_size=2) == 4
    bodies = [_verify(r) for r in local_callbacks.requests]
    assert sorted(b["data"]["conversation"]["id"] for b in bodies) == sorted(str(c.pk) for c in expired)
    assert {b["type"] for b in bodies} == {"conversation.expired"}


@pytest.mark.django_db
def test_call_completed_is_posted(local_callbacks, service, django_capture_on_commit_callbacks):
    from proxy.side_effects import call_progressed

    conversation = ConversationFactory(service=service)
    call = Call.objects.create(
        uuid="call-1", conversation=conversation, service=service, status="completed", duration=42
    )
    with django_capture_on_commit_callbacks(execute=True):
        call_progressed(call, event="call.completed")
    (body,) = [_verify(r) for r in local_callbacks.requests]
    assert body["type"] == "call.completed"
    assert body["data"]["call"]["uuid"] == "call-1" and body["data"]["call"]["duration"] == 42


# --- Delivery: retries and refusals ------------------------------------------------------------


def _pending(service, url: str) -> CallbackDelivery:
    return CallbackDelivery.objects.create(
        service=service, event="conversation.closed", payload={"id": "e1", "type": "x", "data": {}}, url=url
    )


@pytest.mark.django_db
def test_a_failing_endpoint_is_retried_with_backoff(local_callbacks, service):
    local_callbacks.status = 503
    delivery = _pending(service, local_callbacks.url)
    outcome = callback_deliver(delivery_id=delivery.pk)
    assert outcome.result == "retry" and 1 <= outcome.retry_in <= 30
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 503)
    assert delivery.next_attempt_at > timezone.now()
    # Not due yet: a duplicate task does nothing.
    assert callback_deliver(delivery_id=delivery.pk).result == "skipped"
    local_callbacks.status = 204
    assert callback_deliver(delivery_id=delivery.pk, now=delivery.next_attempt_at).result == "done"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 204)
    assert len(local_callbacks.requests) == 2
    assert delivery.delivered_at is not None


@pytest.mark.django_db
def test_the_same_body_goes_out_on_every_attempt(local_callbacks, service):
    local_callbacks.status = 500
    delivery = _pending(service, local_callbacks.url)
    callback_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    local_callbacks.status = 200
    callback_deliver(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    first, second = local_callbacks.requests
    assert first["body"] == second["body"]
    assert first["headers"]["X-Callback-Id"] == "e1"


@pytest.mark.django_db
def test_retries_stop_after_a_day(local_callbacks, service):
    local_callbacks.status = 500
    delivery = _pending(service, local_callbacks.url)
    CallbackDelivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(hours=23, minutes=59, seconds=55)
    )
    outcome = callback_deliver(delivery_id=delivery.pk)
    assert outcome.result == "failed"
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error.startswith("Gave up")


@pytest.mark.django_db
def test_a_private_url_fails_without_a_request(settings, receiver, service):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    delivery = _pending(service, receiver.url)
    outcome = callback_deliver(delivery_id=delivery.pk)
    assert outcome.result == "failed"
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "non-public" in delivery.last_error
    assert receiver.requests == []


@pytest.mark.django_db
def test_an_unreachable_endpoint_is_retried(settings, service):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    delivery = _pending(service, f"http://127.0.0.1:{port}/x")
    assert callback_deliver(delivery_id=delivery.pk).result == "retry"
    delivery.refresh_from_db()
    assert delivery.status == "pending" and "ConnectionError" in delivery.last_error


@pytest.mark.django_db
def test_short_retries_use_a_countdown_long_ones_wait_for_the_redrive(local_callbacks, service):
    from celery.exceptions import Retry

    local_callbacks.status = 500
    delivery = _pending(service, local_callbacks.url)
    with (
        mock.patch.object(tasks.deliver_callback, "retry", return_value=Retry()) as retry,
        pytest.raises(Retry),
    ):
        tasks.deliver_callback.run(delivery.pk)
    assert retry.call_args.kwargs["countdown"] <= 30
    # Tenth attempt: an hour away; no ETA message, the row's next_attempt_at is the schedule.
    CallbackDelivery.objects.filter(pk=delivery.pk).update(attempts=9, next_attempt_at=None)
    with mock.patch.object(tasks.deliver_callback, "retry") as retry:
        assert tasks.deliver_callback.run(delivery.pk) == "retry"
    retry.assert_not_called()
    delivery.refresh_from_db()
    assert delivery.next_attempt_at > timezone.now() + timedelta(minutes=20)


@pytest.mark.django_db
def test_fanout_queues_one_task_per_delivery(local_callbacks, service):
    rows = [_pending(service, local_callbacks.url) for _ in range(3)]
    assert tasks.deliver_callbacks.apply(args=[[r.pk for r in rows]]).get() == 3
    assert CallbackDelivery.objects.filter(status="delivered").count() == 3


@pytest.mark.django_db
def test_conversation_status_is_written_as_expired(local_callbacks, service, django_capture_on_commit_callbacks):
    conversation = ConversationFactory(service=service, expires_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        conversation_close(conversation=conversation)
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.EXPIRED
    (body,) = [_verify(r) for r in local_callbacks.requests]
    assert body["type"] == "conversation.expired"


@pytest.mark.django_db
def test_ended_hook_is_set_based(local_callbacks, service, django_assert_max_num_queries):
    from proxy.side_effects import conversations_ended

    ids = [ConversationFactory(service=service).pk for _ in range(60)]
    ids += [ConversationFactory(service=ServiceFactory()).pk for _ in range(20)]  # no callback URL
    with django_assert_max_num_queries(3):
        conversations_ended(ids, status="expired")
    assert CallbackDelivery.objects.filter(event="conversation.expired").count() == 60


def test_https_goes_through_the_guard_with_certificate_checks(settings, tmp_path):
    import ssl

    import trustme

    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    receiver = Receiver()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    url = receiver.url.replace("http://", "https://")
    try:
        with safe_http.guarded_session() as session:
            assert session.post(url, data=b"{}", timeout=5, verify=str(ca_file)).status_code == 200
            with pytest.raises(requests.exceptions.SSLError):
                session.post(url, data=b"{}", timeout=5)  # not signed by a CA we trust
        settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
        with pytest.raises(requests.ConnectionError, match="non-public"), safe_http.guarded_session() as session:
            session.post(url, data=b"{}", timeout=5, verify=str(ca_file))
    finally:
        receiver.close()
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_staff_can_retry_a_failed_callback(local_callbacks, service, django_capture_on_commit_callbacks):
    from proxy.callbacks import callback_retry

    local_callbacks.status = 500
    delivery = _pending(service, local_callbacks.url)
    CallbackDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert callback_deliver(delivery_id=delivery.pk).result == "failed"
    delivery.refresh_from_db()
    local_callbacks.status = 200
    with django_capture_on_commit_callbacks(execute=True):
        assert callback_retry(delivery=delivery) is True
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    assert callback_retry(delivery=delivery) is False
    first, second = local_callbacks.requests
    assert first["body"] == second["body"]


@pytest.mark.django_db
def test_after_a_rotation_callbacks_carry_both_signatures(local_callbacks, service):
    from proxy.service_settings import callback_secret_rotate

    new = callback_secret_rotate(service=service)
    delivery = _pending(service, local_callbacks.url)
    assert callback_deliver(delivery_id=delivery.pk).result == "done"
    (request,) = local_callbacks.requests
    timestamp = request["headers"]["X-Signature-Timestamp"]
    signed = timestamp.encode() + b"." + request["body"]
    expected = ["sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in (new, SECRET)]
    assert request["headers"]["X-Signature"] == ",".join(expected)


def test_a_hooks_body_is_the_envelope_as_callbacks_send_it():
    from datetime import UTC, datetime
    from uuid import UUID

    from proxy.callbacks import envelope, envelope_body, payload_body

    now = datetime(2026, 1, 1, tzinfo=UTC)
    data = {"b": UUID(int=1), "a": now, "c": {"z": [1, None]}}
    envelope_id, body = envelope_body("call.intercept", data, now=now)
    expected = envelope("call.intercept", data, now=now)
    expected["id"] = envelope_id
    assert body == payload_body(expected)


def test_a_calls_participants_are_shown_by_opaque_id_in_at_most_one_query(conversation, django_assert_num_queries):
    from proxy.callbacks import call_data
    from proxy.models import Call

    alice, bob = conversation.participants.order_by("position")
    loaded = Call(uuid="leg-ids", from_participant=alice, to_participant=bob)
    with django_assert_num_queries(0):  # the participants in hand
        data = call_data(loaded)
    assert (data["from_participant"], data["to_participant"]) == (str(alice.public_id), str(bob.public_id))
    by_key = Call(uuid="leg-ids", from_participant_id=alice.pk, to_participant_id=bob.pk)
    with django_assert_num_queries(1):  # both, in one read
        assert call_data(by_key) == data
