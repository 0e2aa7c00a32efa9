"""Logs (request ids, one line per request, no real numbers), /metrics behind its token, Sentry scrubbing."""

from __future__ import annotations

import json
import logging
import sys
from types import SimpleNamespace

import pytest
from django.test import Client

from config import logs, metrics_view
from config.sentry import before_breadcrumb, before_send
from proxy.services import conversation_create
from tests.conftest import ALICE, BOB, CAROL

pytestmark = pytest.mark.django_db


def _request_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "request"]


# --- Request ids and the request line ----------------------------------------------------------


def test_every_response_carries_a_request_id_and_a_sane_one_is_honoured(client: Client):
    made = client.get("/health/live")["X-Request-ID"]
    assert len(made) == 32
    assert client.get("/health/live", HTTP_X_REQUEST_ID="lb-7f3a.42")["X-Request-ID"] == "lb-7f3a.42"
    # Not a token: replaced, never echoed into headers or logs.
    replaced = client.get("/health/live", HTTP_X_REQUEST_ID="x" * 300)["X-Request-ID"]
    assert replaced != "x" * 300 and len(replaced) == 32


def test_one_line_per_request_with_the_route_never_the_numbers(client: Client, conversation, settings, caplog):
    settings.VONAGE_SIGNATURE_SECRET = ""
    with caplog.at_level(logging.INFO):
        response = client.get(
            "/webhooks/answer", {"from": ALICE, "to": "12015550200", "uuid": "call-1"}, HTTP_X_REQUEST_ID="req-1"
        )
    assert response.status_code == 200
    (line,) = _request_lines(caplog)
    assert (line.method, line.route, line.status, line.outcome) == ("GET", "webhooks/answer", 200, "connected")
    assert line.duration_ms > 0
    # Every line of the request carries its id.
    assert {record.request_id for record in caplog.records if hasattr(record, "request_id")} == {"req-1"}
    assert logs.REQUEST_ID.get() == "-"  # and it does not leak into what runs next


def test_the_answer_outcome_names_what_happened(client: Client, conversation, settings, caplog):
    settings.VONAGE_SIGNATURE_SECRET = ""
    with caplog.at_level(logging.INFO):
        client.get("/webhooks/answer", {"from": CAROL, "to": "12015550200"})
    assert _request_lines(caplog)[-1].outcome == "unknown"


def _formatted(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    for log_filter in (logs.RequestIdFilter(), logs.RedactNumbers()):
        log_filter.filter(record)
    return formatter.format(record)


def test_json_lines_carry_the_fields_and_mask_digit_runs():
    token = logs.REQUEST_ID.set("abc123")
    try:
        record = logging.LogRecord("proxy", logging.WARNING, __file__, 1, "sent to %s", (ALICE,), None)
        record.route = "webhooks/answer"
        line = json.loads(_formatted(record, logs.json_formatter()))
    finally:
        logs.REQUEST_ID.reset(token)
    assert line["level"] == "WARNING" and line["logger"] == "proxy" and line["request_id"] == "abc123"
    assert line["route"] == "webhooks/answer"
    assert line["message"] == "sent to ********101"


def test_times_and_durations_are_not_numbers():
    assert logs.mask_digits("heartbeat 1796288694.1927032 after 0.073088015000394 s") == (
        "heartbeat 1796288694.1927032 after 0.073088015000394 s"
    )


def test_uuids_are_ids_not_numbers():
    # A UUID's last group may be all digits; staff look calls and recordings up by them.
    text = "recording cccccccc-1111-2222-3333-444444444444 of 12015550101"
    assert logs.mask_digits(text) == "recording cccccccc-1111-2222-3333-444444444444 of ********101"


def test_exception_text_is_masked_too():
    try:
        raise ValueError(f"bad number {BOB}")
    except ValueError:
        record = logging.LogRecord("proxy", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = _formatted(record, logs.json_formatter())
    assert BOB not in text and "********102" in text


def test_the_request_id_travels_into_a_task():
    headers: dict = {}
    token = logs.REQUEST_ID.set("req-9")
    try:
        logs._carry_request_id(headers=headers)
    finally:
        logs.REQUEST_ID.reset(token)
    assert headers == {logs.TASK_HEADER: "req-9"}
    # The worker's side: the header arrives as an attribute of the task's request.
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False, request_id="req-9"))
    logs._take_request_id(task=task)
    assert logs.REQUEST_ID.get() == "req-9"
    logs._drop_request_id(task=task)
    assert logs.REQUEST_ID.get() == "-"


def test_pool_exhaustion_is_a_warning_naming_the_service(service, caplog):
    from proxy.errors import PoolExhausted

    with caplog.at_level(logging.WARNING), pytest.raises(PoolExhausted):
        conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}])
    record = next(r for r in caplog.records if getattr(r, "event", "") == "pool_exhausted")
    assert record.levelno == logging.WARNING and record.service == "acme" and record.country == "US"


# --- /metrics ----------------------------------------------------------------------------------


@pytest.fixture
def scraper(settings, monkeypatch) -> Client:
    settings.METRICS_TOKEN = "scrape-token"
    monkeypatch.setattr(metrics_view, "_pool_cache", None)
    return Client(HTTP_AUTHORIZATION="Bearer scrape-token")


def test_metrics_need_the_token(client: Client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")


def test_metrics_show_webhooks_api_outboxes_pools_and_tasks(
    scraper, api, pool, settings, django_capture_on_commit_callbacks
):
    settings.VONAGE_SIGNATURE_SECRET = ""
    body = {"participants": [{"number": ALICE}, {"number": BOB}]}
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post("/api/v1/conversations", body, format="json")
    assert created.status_code == 201
    proxy_number = created.json()["participants"][0]["proxy_number"]
    scraper.get("/webhooks/answer", {"from": ALICE, "to": proxy_number})
    response = scraper.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'masked_webhook_duration_seconds_bucket{le="1.0",outcome="connected",route="webhooks/answer"}' in text
    assert 'masked_api_requests_total{method="POST",route="api/v1/conversations",status="201"}' in text
    for kind in ("notifications", "callbacks", "recordings", "validations"):
        assert f'masked_outbox_past_due{{kind="{kind}"}}' in text
        assert f'masked_outbox_oldest_past_due_seconds{{kind="{kind}"}}' in text
    assert 'masked_outbox_waiting{kind="notifications"}' in text
    assert 'masked_pool_headroom{country="US",service="acme"}' in text
    assert 'masked_celery_tasks_total{outcome="valid",task="proxy.tasks.validate_conversation_numbers"}' in text
    assert ALICE not in text


def test_metrics_still_answer_without_the_database(scraper, monkeypatch):
    from django.db import OperationalError

    def gone(*args, **kwargs):
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(metrics_view.ProductCollector, "_from_database", gone)
    response = scraper.get("/metrics")
    assert response.status_code == 200
    assert "masked_metrics_database_ok 0.0" in response.content.decode()


# --- Sentry ------------------------------------------------------------------------------------


def test_sentry_events_lose_real_numbers_and_query_strings():
    event = {
        "message": f"call from {ALICE}",
        "exception": {"values": [{"value": f"no route for {BOB}", "type": "LookupError"}]},
        "request": {"url": "https://x.example/webhooks/answer", "query_string": f"from={ALICE}", "data": {"to": BOB}},
        "extra": {"numbers": [ALICE, ("+" + BOB,)]},
    }
    scrubbed = json.dumps(before_send(event, {}))
    assert ALICE not in scrubbed and BOB not in scrubbed
    assert "query_string" not in scrubbed and '"data"' not in scrubbed
    assert "https://x.example/webhooks/answer" in scrubbed
    assert ALICE not in json.dumps(before_breadcrumb({"message": f"sms to {ALICE}"}, {}))


def test_sentry_starts_only_with_a_dsn(monkeypatch):
    import sentry_sdk

    from config.sentry import before_breadcrumb, before_send, sentry_init

    started: list[dict] = []
    monkeypatch.setattr(sentry_sdk, "init", lambda **options: started.append(options))
    assert sentry_init(dsn="", environment="", release="") is False
    assert started == []
    assert sentry_init(dsn="https://key@o1.ingest.example/1", environment="prod", release="abc") is True
    (options,) = started
    # Every event and breadcrumb through the scrubbers, and nothing personal sent by default.
    assert options["before_send"] is before_send and options["before_breadcrumb"] is before_breadcrumb
    assert options["send_default_pii"] is False and options["include_local_variables"] is False
    assert options["max_request_body_size"] == "never"
