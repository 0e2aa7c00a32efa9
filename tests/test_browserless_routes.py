"""Vonage's webhooks skip the browser middleware (config.middleware.BrowserlessRoutesMiddleware),
and lose nothing the rest of the stack guaranteed them."""

from __future__ import annotations

import logging

import pytest
from django.core.signals import got_request_exception
from django.test import Client

from tests.conftest import ALICE

KNOWN_CALL = {"from": ALICE, "to": "12015550200", "uuid": "u-browserless"}


def test_a_webhook_gets_no_browser_headers_and_no_session_while_a_page_still_does(client: Client, conversation):
    webhook = client.get("/webhooks/answer", KNOWN_CALL)
    assert webhook.status_code == 200
    assert webhook.json()[-1]["action"] == "connect"
    # Set by the clickjacking, security and session middleware for everything else.
    assert "X-Frame-Options" not in webhook
    assert "X-Content-Type-Options" not in webhook
    assert "Vary" not in webhook
    assert not webhook.cookies
    # What stays for every request: the request id (the request line's middleware).
    assert webhook["X-Request-ID"]

    page = client.get("/admin/login/")
    assert page.status_code == 200
    assert page["X-Frame-Options"] == "DENY"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert "csrftoken" in page.cookies


def test_the_request_line_still_names_the_route_and_the_outcome(client: Client, conversation, caplog):
    with caplog.at_level(logging.INFO, logger="request"):
        client.get("/webhooks/answer", KNOWN_CALL)
    (line,) = [r for r in caplog.records if r.name == "request"]
    assert line.route == "webhooks/answer"
    assert line.outcome == "connected"
    assert line.status == 200


def test_the_body_limit_still_applies(client: Client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 100
    response = client.post("/webhooks/event", "x" * 101, content_type="application/json")
    assert response.status_code == 413


def test_plain_http_is_still_redirected_when_https_is_required(client: Client, conversation, settings):
    settings.SECURE_SSL_REDIRECT = True
    redirected = client.get("/webhooks/answer", KNOWN_CALL)
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")
    served = client.get("/webhooks/answer", KNOWN_CALL, secure=True)
    assert served.status_code == 200
    assert served.json()[-1]["action"] == "connect"


def test_an_unknown_webhook_path_is_a_404(client: Client):
    assert client.get("/webhooks/nothing-here").status_code == 404


def test_a_crashing_webhook_view_is_a_500_that_error_reporting_hears_of(client: Client, monkeypatch):
    from webhooks import views

    # The recording view lets a failure to read its request through (the others catch it).
    monkeypatch.setattr(views, "_payload", lambda request: (_ for _ in ()).throw(RuntimeError("boom")))
    heard: list[object] = []

    def listener(sender, request=None, **kwargs):
        heard.append(request.path if request is not None else None)

    got_request_exception.connect(listener)
    try:
        crashing = Client(raise_request_exception=False)
        response = crashing.get("/webhooks/recording")
    finally:
        got_request_exception.disconnect(listener)
    assert response.status_code == 500
    assert heard == ["/webhooks/recording"]


@pytest.mark.parametrize("path", ["/webhooks/answer", "/webhooks/sms/inbound"])
def test_every_webhook_under_the_prefix_takes_the_short_way(client: Client, db, path, monkeypatch):
    from django.contrib.sessions.middleware import SessionMiddleware

    called: list[str] = []
    original = SessionMiddleware.process_request
    monkeypatch.setattr(
        SessionMiddleware, "process_request", lambda self, r: called.append(r.path) or original(self, r)
    )
    client.get(path)
    client.get("/admin/login/")
    assert called == ["/admin/login/"]
