from __future__ import annotations

import os

import pytest
from rest_framework.test import APIClient

from proxy.api_keys import api_key_create
from proxy.models import Conversation, Service
from tests.factories import ConversationFactory, ParticipantFactory, ServiceFactory, VirtualNumberFactory
from tests.virtual_numbers.fake_provider import FakeProvider, offer
from virtual_numbers.models import VirtualNumber

# Valid numbers for people (US 555-01xx block) and for the pool (other NJ exchanges).
ALICE = "12015550101"
BOB = "12015550102"
CAROL = "12015550103"
UK_PERSON = "447400123456"


@pytest.fixture
def service(db) -> Service:
    return ServiceFactory(slug="acme", name="Acme Rides", default_country="US")


@pytest.fixture
def api_key(service) -> str:
    return api_key_create(service=service)[1]


@pytest.fixture
def api(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def pool(service) -> list[VirtualNumber]:
    """Three US voice numbers in the service's pool."""
    return [VirtualNumberFactory(service=service, number=f"1201555{n:04d}") for n in (200, 201, 202)]


@pytest.fixture(autouse=True)
def _redrive_forgets_what_it_queued(monkeypatch):
    """Primary keys are reused from test to test: the redrive's memory of the rows it queued
    (kept in the cache) must not carry over. tests/proxy/test_tasks_outbox.py tests it."""
    from datetime import timedelta

    monkeypatch.setattr("proxy.outbox.REQUEUE_QUIET", timedelta(0))


@pytest.fixture(autouse=True)
def _redis_breaker_closed():
    """A test that made Redis fail leaves the next one a breaker that lets Redis be tried."""
    from config.redis_guard import REDIS

    REDIS._open_until = 0.0
    yield
    REDIS._open_until = 0.0


def pytest_sessionfinish(session, exitstatus):
    """With TEST_FORBID_SKIPS=1 (CI on PostgreSQL + Redis + Chromium) a skipped test fails the run."""
    if os.environ.get("TEST_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"TEST_FORBID_SKIPS: {len(skipped)} test(s) skipped; every test must run here.", red=True)
        session.exitstatus = 1


@pytest.fixture
def fake(monkeypatch) -> FakeProvider:
    """An in-memory Vonage for the provisioning pages (buy, import, release)."""
    provider = FakeProvider(for_sale=[offer("12015550300"), offer("12015550301")])
    monkeypatch.setattr("telephony.registry._provider", provider)
    return provider


@pytest.fixture
def conversation(service) -> Conversation:
    """An open conversation of ALICE and BOB on 12015550200, external id order-42."""
    conversation = ConversationFactory(service=service, external_id="order-42")
    number = VirtualNumberFactory(service=service, number="12015550200")
    ParticipantFactory(conversation=conversation, real_number=ALICE, proxy_number=number, position=0)
    ParticipantFactory(conversation=conversation, real_number=BOB, proxy_number=number, position=1)
    return conversation


@pytest.fixture(autouse=True)
def _no_pending_text_wake_up():
    """Each test starts with no drain wake-up pending (proxy.message_outbox): one left by a
    test whose worker stopped before taking it would keep texts from waking a drain."""
    from proxy.message_outbox import messages_wake_taken

    messages_wake_taken()
