from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from proxy.models import Call, Conversation
from tests.factories import ConversationFactory, ParticipantFactory, ServiceFactory, VirtualNumberFactory
from virtual_numbers.models import PoolExhaustion, VirtualNumber
from virtual_numbers.selectors import calls_per_day, pool_health, with_open_conversations

pytestmark = pytest.mark.django_db

ALICE, BOB, CAROL, DAN = "12015550101", "12015550102", "12015550103", "12015550104"


def _conversation(service, pairs, **kwargs):
    conversation = ConversationFactory(service=service, **kwargs)
    for position, (real, number) in enumerate(pairs):
        ParticipantFactory(conversation=conversation, real_number=real, proxy_number=number, position=position)
    return conversation


@pytest.fixture
def service():
    return ServiceFactory(name="Acme")


@pytest.fixture
def numbers(service):
    return [VirtualNumberFactory(service=service, number=f"1201555{n:04d}") for n in (200, 201, 202, 203)]


def test_busiest_real_number_sets_the_needed_pool(service, numbers):
    v0, v1, v2, _ = numbers
    # Alice is in three conversations: the pool needs three numbers whatever the conversation count.
    _conversation(service, [(ALICE, v0), (BOB, v0)])
    _conversation(service, [(ALICE, v1), (CAROL, v0)])
    _conversation(service, [(ALICE, v2), (DAN, v0)])

    [row] = pool_health(service=service, threshold=2)

    assert (row.numbers, row.usable, row.open_conversations, row.busiest_concurrency) == (4, 4, 3, 3)
    assert row.headroom == 1
    assert row.warning  # 1 < 2
    assert row.utilisation == 75


def test_ended_expired_draining_and_released_do_not_count(service, numbers):
    v0, v1, v2, v3 = numbers
    v2.state = VirtualNumber.State.DRAINING
    v2.save()
    v3.state = VirtualNumber.State.RELEASED
    v3.save()
    VirtualNumberFactory(service=service, number="12015550210", voice=False)
    _conversation(service, [(ALICE, v0), (BOB, v0)])
    closed = _conversation(service, [(ALICE, v1), (CAROL, v1)], status=Conversation.Status.CLOSED)
    closed.participants.update(active=False)
    _conversation(service, [(ALICE, v1), (DAN, v1)], expires_at=timezone.now() - timedelta(minutes=1))

    [row] = pool_health(service=service, threshold=1)

    assert (row.numbers, row.usable, row.draining) == (4, 2, 1)  # v0, v1, v2 and the SMS-only one
    assert (row.open_conversations, row.busiest_concurrency, row.headroom) == (1, 1, 1)
    assert not row.warning


def test_rows_per_country_and_exhaustions_of_the_last_day(service, numbers):
    VirtualNumberFactory(service=service, number="447700900200", country="GB")
    PoolExhaustion.objects.create(service=service, country="GB")
    PoolExhaustion.objects.create(service=service, country="FR")
    old = PoolExhaustion.objects.create(service=service, country="GB")
    PoolExhaustion.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))

    rows = {row.country: row for row in pool_health(service=service, threshold=0)}

    assert set(rows) == {"FR", "GB", "US"}
    assert (rows["GB"].numbers, rows["GB"].exhaustions_24h, rows["GB"].warning) == (1, 1, True)
    assert (rows["FR"].numbers, rows["FR"].usable, rows["FR"].headroom) == (0, 0, 0)
    assert (rows["US"].exhaustions_24h, rows["US"].warning) == (0, False)


def test_services_are_kept_apart(service, numbers):
    other = ServiceFactory(name="Other")
    VirtualNumberFactory(service=other, number="12015550299")
    _conversation(service, [(ALICE, numbers[0]), (BOB, numbers[0])])

    rows = {row.service_name: row for row in pool_health()}

    assert rows["Acme"].open_conversations == 1
    assert (rows["Other"].numbers, rows["Other"].open_conversations) == (1, 0)
    assert [r.service_name for r in pool_health(service=other)] == ["Other"]


def test_open_conversations_per_number(service, numbers):
    _conversation(service, [(ALICE, numbers[0]), (BOB, numbers[0])])
    _conversation(service, [(ALICE, numbers[1]), (CAROL, numbers[0])])
    annotated = with_open_conversations(VirtualNumber.objects.filter(number__in=[n.number for n in numbers]))
    counts = {n.number: n.open_count for n in annotated if n.open_count}
    assert counts == {numbers[0].number: 2, numbers[1].number: 1}


def test_calls_per_day_counts_calls_answers_and_minutes(service):
    now = timezone.now().replace(hour=12)
    yesterday = now - timedelta(days=1)

    def leg(direction, created_at, answered=False, duration=None):
        Call.objects.create(
            uuid=f"leg-{Call.objects.count()}",
            service=service,
            direction=direction,
            created_at=created_at,
            answered_at=created_at if answered else None,
            duration=duration,
        )

    leg("inbound", yesterday, answered=True, duration=70)
    leg("outbound", yesterday, answered=True, duration=60)
    leg("inbound", now, answered=True)
    leg("outbound", now, answered=False)
    leg("inbound", now, answered=True)
    leg("outbound", now, answered=True, duration=120)

    stats = calls_per_day(service=service, days=3, now=now)

    assert [s.day for s in stats] == [(now - timedelta(days=d)).date() for d in (2, 1, 0)]
    assert [(s.calls, s.answered, s.seconds) for s in stats] == [(0, 0, 0), (1, 1, 60), (2, 1, 120)]
    assert stats[0].answer_rate is None
    assert stats[2].answer_rate == 0.5
    assert stats[2].minutes == 2.0
    assert calls_per_day(service=ServiceFactory(), days=3, now=now)[2].calls == 0


# --- PIN pools -------------------------------------------------------------------------------------


def _pin_conversations(service, number, count, *, seller=ALICE, first=0):
    """``count`` open conversations of ``seller`` with different buyers, all on ``number``, by PIN only."""
    for i in range(first, first + count):
        conversation = ConversationFactory(service=service)
        for position, real in enumerate((seller, f"1201555{1000 + i:04d}")):
            ParticipantFactory(
                conversation=conversation,
                real_number=real,
                proxy_number=number,
                position=position,
                pin=f"{2 * i + position:06d}",
                routes_by_pair=False,
            )


def test_one_number_per_country_is_a_healthy_pin_pool(service, settings):
    settings.PIN_NUMBER_CAPACITY = 100
    service.pin_mode = "always"
    service.save()
    us = VirtualNumberFactory(service=service, number="12015550200")
    gb = VirtualNumberFactory(service=service, number="447400000001", country="GB")
    _pin_conversations(service, us, 30)  # Alice in 30 conversations on one number
    _pin_conversations(service, gb, 2, seller="447400123456")

    rows = {row.country: row for row in pool_health(service=service, threshold=2)}

    us_row = rows["US"]
    assert (us_row.usable, us_row.open_conversations, us_row.pin_only) == (1, 30, 60)
    assert (us_row.busiest_concurrency, us_row.needed, us_row.headroom) == (0, 1, 0)
    assert us_row.pin_pool and not us_row.warning  # a pair pool with headroom 0 < 2 would warn
    assert us_row.utilisation == us_row.pin_load == 60
    assert not rows["GB"].warning and rows["GB"].needed == 1


def test_a_pin_pool_warns_when_its_numbers_fill_up_or_it_has_none(service, settings):
    settings.PIN_NUMBER_CAPACITY = 50
    service.pin_mode = "always"
    service.save()
    number = VirtualNumberFactory(service=service, number="12015550200")
    _pin_conversations(service, number, 21)  # 42 PINs on a number that carries 50: 84 %

    [row] = pool_health(service=service, threshold=2)
    assert row.pin_load == 84 and row.warning and row.headroom == 0

    _pin_conversations(service, number, 10, seller=BOB, first=21)  # 62 PINs: two numbers needed
    [row] = pool_health(service=service, threshold=2)
    assert (row.needed, row.headroom) == (2, -1) and row.warning

    number.state = VirtualNumber.State.DRAINING
    number.save()
    [row] = pool_health(service=service, threshold=2)
    assert row.usable == 0 and row.warning


def test_a_fallback_pool_is_sized_like_any_pair_pool(service, numbers):
    service.pin_mode = "fallback"
    service.save()
    _conversation(service, [(ALICE, numbers[0]), (BOB, numbers[0])])
    _conversation(service, [(ALICE, numbers[1]), (CAROL, numbers[0])])

    [row] = pool_health(service=service, threshold=2)
    assert not row.pin_pool and (row.busiest_concurrency, row.needed, row.headroom) == (2, 2, 2)
    assert not row.warning
