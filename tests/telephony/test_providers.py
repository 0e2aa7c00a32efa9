"""The provider contract, run twice: the official SDK over HTTPS against the sandbox server,
and the in-process sandbox provider. Success and each failure class for every method."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import phonenumbers
import pytest

from telephony.models import SandboxCall, SandboxMessage, SandboxNumber
from telephony.provider import ProviderError
from telephony.sandbox.engine import call_record, failure_inject, recording_create, transcript_create
from tests.conftest import ALICE, BOB

pytestmark = pytest.mark.django_db

FOR_SALE = "12015550300"
RETRYABLE = ["throttle", "5xx", "timeout"]


def _fail(path, mode):
    # A short hold: the SDK's timeout is 1 s in the "timeout" mode (conftest); the server lets go at teardown anyway.
    failure_inject(path=path, mode=mode, hold_seconds=3)


def _live_call(uuid="leg-1", status="answered"):
    return call_record(
        uuid=uuid,
        conversation_uuid="CON-1",
        direction="outbound",
        from_number=FOR_SALE,
        to_number=BOB,
        status=status,
    )


# --- SMS ----------------------------------------------------------------------------------------


def test_send_sms_returns_the_message_id_and_the_sandbox_keeps_the_message(provider):
    result = provider.send_sms(from_number=FOR_SALE, to_number=ALICE, text="Call 1 201 555 0300", client_ref="n-1")
    stored = SandboxMessage.objects.get(message_id=result.message_id)
    assert (stored.to_number, stored.text, stored.client_ref, stored.message_type) == (
        ALICE,
        "Call 1 201 555 0300",
        "n-1",
        "text",
    )
    assert result.price == Decimal("0.0075")


def test_send_sms_picks_unicode_itself(provider):
    provider.send_sms(from_number=FOR_SALE, to_number=ALICE, text="Привет, Zoë 👋")
    assert SandboxMessage.objects.get().message_type == "unicode"


def test_long_sms_is_sent_in_parts_and_priced_in_total(provider):
    result = provider.send_sms(from_number=FOR_SALE, to_number=ALICE, text="x" * 200)
    assert SandboxMessage.objects.count() == 2
    assert result.price == Decimal("0.015")


@pytest.mark.parametrize("mode", RETRYABLE)
def test_send_sms_retryable_failures(provider, mode):
    _fail("/sms/json", mode)
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(from_number=FOR_SALE, to_number=ALICE, text="hi")
    assert caught.value.permanent is False
    assert not SandboxMessage.objects.exists()


def test_send_sms_permanent_failure(provider):
    _fail("/sms/json", "permanent")
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(from_number=FOR_SALE, to_number=ALICE, text="hi")
    assert caught.value.permanent is True
    assert caught.value.code == "sms-7"


def test_send_sms_to_an_invalid_number_is_permanent(provider):
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(from_number=FOR_SALE, to_number="12345678", text="hi")
    assert caught.value.permanent is True


def test_throttling_passes_after_the_injected_failures(provider):
    failure_inject(path="/sms/json", mode="throttle", count=2)
    for _ in range(2):
        with pytest.raises(ProviderError):
            provider.send_sms(from_number=FOR_SALE, to_number=ALICE, text="hi")
    assert provider.send_sms(from_number=FOR_SALE, to_number=ALICE, text="hi").message_id


# --- Number Insight -------------------------------------------------------------------------------


def test_standard_insight_describes_a_valid_number(provider):
    result = provider.number_insight(ALICE)
    assert (result.valid, result.country, result.number_type, result.ported) == (True, "US", "mobile", False)
    assert result.carrier


def test_insight_reports_the_accounts_own_numbers_as_virtual(provider):
    provider.buy_number(country="US", number=FOR_SALE)
    assert provider.number_insight(FOR_SALE).number_type == "virtual"


def test_basic_insight_has_the_country_but_no_carrier(provider):
    result = provider.number_insight(ALICE, level="basic")
    assert (result.valid, result.country, result.number_type) == (True, "US", "")


@pytest.mark.parametrize("number", ["12345678", "447700900123", "not-a-number"])
def test_insight_of_an_invalid_number_is_a_result_not_an_error(provider, number):
    assert provider.number_insight(number).valid is False


@pytest.mark.parametrize("mode", RETRYABLE)
def test_insight_retryable_failures(provider, mode):
    _fail("/ni/", mode)
    with pytest.raises(ProviderError) as caught:
        provider.number_insight(ALICE)
    assert caught.value.permanent is False


def test_insight_permanent_failure(provider):
    _fail("/ni/", "permanent")
    with pytest.raises(ProviderError) as caught:
        provider.number_insight(ALICE)
    assert caught.value.permanent is True


# --- Numbers --------------------------------------------------------------------------------------


def test_search_offers_valid_numbers_of_the_country(provider):
    found = provider.search_numbers(country="GB", size=5)
    assert len(found) == 5
    for offer in found:
        parsed = phonenumbers.parse("+" + offer.number)
        assert phonenumbers.is_valid_number(parsed)
        assert offer.country == "GB"
        assert "VOICE" in offer.features
        assert offer.monthly_cost > 0


def test_search_filters_by_pattern_and_leaves_out_owned_numbers(provider):
    provider.buy_number(country="US", number=FOR_SALE)
    numbers = [n.number for n in provider.search_numbers(country="US", pattern="55503", size=100)]
    assert numbers
    assert FOR_SALE not in numbers
    assert all("55503" in n for n in numbers)


def test_buy_link_list_and_cancel(provider):
    provider.buy_number(country="US", number=FOR_SALE)
    provider.link_number(country="US", number=FOR_SALE, app_id="app-42")
    (owned,) = provider.list_owned_numbers()
    assert (owned.number, owned.country, owned.app_id) == (FOR_SALE, "US", "app-42")
    provider.cancel_number(country="US", number=FOR_SALE)
    assert provider.list_owned_numbers() == []


def test_link_defaults_to_the_providers_application(provider):
    provider.buy_number(country="US", number=FOR_SALE)
    provider.link_number(country="US", number=FOR_SALE)
    assert SandboxNumber.objects.get().app_id == provider.application_id


def test_list_owned_numbers_reads_every_page(provider):
    SandboxNumber.objects.bulk_create(
        SandboxNumber(msisdn=f"1201555{n:04d}", country="US", number_type="mobile-lvn", features=["VOICE"])
        for n in range(1000, 1130)
    )
    assert len(provider.list_owned_numbers()) == 130


@pytest.mark.parametrize(
    "action",
    [
        lambda p: p.buy_number(country="US", number=BOB),  # not for sale
        lambda p: p.buy_number(country="GB", number=FOR_SALE),  # wrong country
        lambda p: p.cancel_number(country="US", number=FOR_SALE),  # not owned
        lambda p: p.link_number(country="US", number=FOR_SALE, app_id="a"),  # not owned
    ],
)
def test_numbers_refusals_are_permanent(provider, action):
    with pytest.raises(ProviderError) as caught:
        action(provider)
    assert caught.value.permanent is True


def test_buying_an_owned_number_again_is_permanent(provider):
    provider.buy_number(country="US", number=FOR_SALE)
    with pytest.raises(ProviderError) as caught:
        provider.buy_number(country="US", number=FOR_SALE)
    assert caught.value.permanent is True


NUMBER_CALLS = {
    "/number/search": lambda p: p.search_numbers(country="US"),
    "/number/buy": lambda p: p.buy_number(country="US", number=FOR_SALE),
    "/number/cancel": lambda p: p.cancel_number(country="US", number=FOR_SALE),
    "/number/update": lambda p: p.link_number(country="US", number=FOR_SALE, app_id="a"),
    "/account/numbers": lambda p: p.list_owned_numbers(),
}


@pytest.mark.parametrize("path", NUMBER_CALLS)
@pytest.mark.parametrize("mode", ["throttle", "5xx", "timeout", "permanent"])
def test_numbers_failure_classes(provider, path, mode):
    SandboxNumber.objects.create(msisdn=FOR_SALE, country="US", number_type="mobile-lvn", features=["VOICE"])
    _fail(path, mode)
    with pytest.raises(ProviderError) as caught:
        NUMBER_CALLS[path](provider)
    assert caught.value.permanent is (mode == "permanent")


# --- Voice call control ---------------------------------------------------------------------------


def test_get_call_reads_a_completed_leg_with_typed_duration_and_price(provider):
    call_record(
        uuid="leg-9",
        conversation_uuid="CON-9",
        direction="outbound",
        from_number=FOR_SALE,
        to_number=BOB,
        status="completed",
        duration=61,
        price="0.02540000",
    )
    info = provider.get_call("leg-9")
    assert (info.uuid, info.conversation_uuid, info.status, info.direction) == (
        "leg-9",
        "CON-9",
        "completed",
        "outbound",
    )
    assert (info.from_number, info.to_number, info.duration, info.price) == (FOR_SALE, BOB, 61, Decimal("0.0254"))


def test_get_unknown_call_is_permanent(provider):
    with pytest.raises(ProviderError) as caught:
        provider.get_call("no-such-call")
    assert caught.value.permanent is True


def test_hangup_ends_the_leg_and_a_second_hangup_is_refused(provider):
    _live_call()
    provider.hangup_call("leg-1")
    assert SandboxCall.objects.get().status == "completed"
    with pytest.raises(ProviderError) as caught:
        provider.hangup_call("leg-1")
    assert caught.value.permanent is True


def test_transfer_talk_and_stream_reach_the_leg(provider):
    _live_call()
    provider.transfer_call("leg-1", ncco=[{"action": "talk", "text": "Goodbye"}])
    provider.talk_into_call("leg-1", text="Still there?")
    provider.stream_into_call("leg-1", url="https://example.com/hold.mp3")
    actions = SandboxCall.objects.get().actions
    assert [a["action"] for a in actions] == ["transfer", "talk", "stream"]
    assert actions[0]["destination"]["ncco"][0]["text"] == "Goodbye"
    assert actions[1]["text"] == "Still there?"
    assert actions[2]["stream_url"] == ["https://example.com/hold.mp3"]


def test_transfer_with_an_invalid_ncco_is_permanent_and_sends_nothing(provider):
    _live_call()
    with pytest.raises(ProviderError) as caught:
        provider.transfer_call("leg-1", ncco=[{"action": "talk"}])
    assert caught.value.permanent is True
    assert SandboxCall.objects.get().actions == []


VOICE_CALLS = {
    "get": lambda p: p.get_call("leg-1"),
    "hangup": lambda p: p.hangup_call("leg-1"),
    "transfer": lambda p: p.transfer_call("leg-1", ncco=[{"action": "talk", "text": "hi"}]),
    "talk": lambda p: p.talk_into_call("leg-1", text="hi"),
    "stream": lambda p: p.stream_into_call("leg-1", url="https://example.com/a.mp3"),
}


@pytest.mark.parametrize("method", VOICE_CALLS)
@pytest.mark.parametrize("mode", ["throttle", "5xx", "timeout", "permanent"])
def test_call_control_failure_classes(provider, method, mode):
    _live_call()
    _fail("/v1/calls", mode)
    with pytest.raises(ProviderError) as caught:
        VOICE_CALLS[method](provider)
    assert caught.value.permanent is (mode == "permanent")


# --- Recordings -----------------------------------------------------------------------------------


@pytest.fixture
def files_host(provider, settings, request):
    """Where recording URLs point: the sandbox server for the SDK, Vonage's host for the sandbox."""
    if provider.name == "vonage":
        return request.getfixturevalue("sandbox_server").host
    return "api.nexmo.com"


def _download(provider, url: str, *, max_bytes: int = 1024 * 1024) -> bytes:
    into = io.BytesIO()
    written = provider.download_file(url, into, max_bytes=max_bytes, max_seconds=10)
    assert written == len(into.getvalue())
    return into.getvalue()


def test_download_file_returns_the_file(provider, files_host):
    recording = recording_create(call_uuid="leg-1")
    content = _download(provider, f"https://{files_host}/v1/files/{recording.id}")
    assert content == bytes(recording.content)
    assert content.startswith(b"ID3")


def test_download_of_a_transcript_returns_its_json(provider, files_host):
    transcript = transcript_create(call_uuid="leg-1", sentences=[(0, "Hello there."), (1, "Hi.")])
    document = json.loads(_download(provider, f"https://{files_host}/v1/files/{transcript.id}"))
    assert [s["sentence"] for s in document["channels"][0]["transcript"]] == ["Hello there."]


def test_a_file_past_the_cap_is_refused_permanently(provider, files_host):
    recording = recording_create(call_uuid="leg-1")
    url = f"https://{files_host}/v1/files/{recording.id}"
    with pytest.raises(ProviderError) as caught:
        _download(provider, url, max_bytes=len(recording.content) - 1)
    assert (caught.value.permanent, caught.value.code) == (True, "too-large")
    assert _download(provider, url, max_bytes=len(recording.content)) == bytes(recording.content)


def test_both_providers_refuse_a_foreign_url_before_any_request(provider):
    with pytest.raises(ProviderError) as caught:
        _download(provider, "https://attacker.example/v1/files/abc")
    assert (caught.value.permanent, caught.value.code) == (True, "untrusted-host")
    assert provider.file_url_trusted("https://api.nexmo.com/v1/files/abc")
    assert not provider.file_url_trusted("https://attacker.example/v1/files/abc")


def test_download_of_a_missing_recording_is_permanent(provider, files_host):
    with pytest.raises(ProviderError) as caught:
        _download(provider, f"https://{files_host}/v1/files/00000000-0000-0000-0000-000000000000")
    assert caught.value.permanent is True


@pytest.mark.parametrize("mode", ["5xx", "throttle"])
def test_download_retryable_failures(provider, files_host, mode):
    recording = recording_create(call_uuid="leg-1")
    _fail("/v1/files/", mode)
    with pytest.raises(ProviderError) as caught:
        _download(provider, f"https://{files_host}/v1/files/{recording.id}")
    assert caught.value.permanent is False


def test_the_sandbox_refuses_requests_without_credentials(sandbox_server):
    import requests

    session = requests.Session()
    session.verify = sandbox_server.ca_path
    sms = session.post(f"{sandbox_server.base_url}/sms/json", data={"from": "1", "to": ALICE, "text": "x"}).json()
    assert sms["messages"][0]["status"] == "4"
    numbers = session.get(f"{sandbox_server.base_url}/account/numbers", auth=("None", "None"))
    assert numbers.status_code == 401
    assert numbers.json()["error-code"] == "401"
    calls = session.get(f"{sandbox_server.base_url}/v1/calls/leg-1")
    assert calls.status_code == 401
    assert calls.json()["title"] == "Unauthorized"
