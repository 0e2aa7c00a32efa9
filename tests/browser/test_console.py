"""A member of staff provisions a pool, watches it fill and finds a conversation, in a real browser."""

from __future__ import annotations

import io
import re

import pytest
import requests
from django.contrib.auth.models import User
from django.core.management import call_command

from proxy.api_keys import api_key_create
from proxy.models import Conversation
from tests.browser.conftest import ARTIFACTS
from tests.factories import ServiceFactory
from virtual_numbers.models import VirtualNumber

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ALICE, BOB = "12015550101", "12015550102"


def _nav(page, title: str) -> None:
    """Follow a sidebar link, as staff do."""
    page.locator("#nav-sidebar-apps a", has_text=title).first.click()
    page.wait_for_load_state()


def _figure(page, name: str) -> str:
    return page.locator(f'[data-figure="{name}"]').inner_text().strip()


def _pool_cell(page, column: str) -> str:
    return page.locator(f'#pool-table tbody tr >> nth=0 >> [data-col="{column}"]').inner_text().strip()


def test_staff_provision_a_pool_and_find_a_conversation(live_server, browser_page):
    page = browser_page
    call_command("setup_roles", verbosity=0)
    service = ServiceFactory(name="Acme Rides", slug="acme", default_country="US")
    _, key = api_key_create(service=service)
    User.objects.create_superuser("staff", "staff@example.com", "a-long-password")

    # Log in.
    page.goto(f"{live_server.url}/admin/")
    page.fill("input[name=username]", "staff")
    page.fill("input[name=password]", "a-long-password")
    page.click("[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))

    # The dashboard starts empty.
    _nav(page, "Pool health")
    page.wait_for_url(re.compile(r"/admin/pool-health/"))
    assert _figure(page, "numbers") == "0"

    # Buy two numbers from the sandbox's inventory into Acme's pool.
    _nav(page, "Buy numbers")
    page.fill("#id_country", "US")
    page.click("#search-form button[type=submit]")
    # count() does not wait: the results page must have loaded first (CI read the old page once).
    page.wait_for_url(re.compile(r"[?&]search=1"))
    page.wait_for_selector("#buy-form input[name=number]")
    boxes = page.locator("#buy-form input[name=number]")
    assert boxes.count() >= 2
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.select_option("#buy-form select[name=service]", label="Acme Rides")
    page.click("#buy-button")
    page.wait_for_selector("text=Bought 2 numbers into Acme Rides")
    assert VirtualNumber.objects.filter(service=service, state="active").count() == 2
    assert page.locator("#result_list tbody tr").count() == 2

    page.goto(f"{live_server.url}/admin/pool-health/")
    assert _figure(page, "usable") == "2"
    assert _pool_cell(page, "headroom") == "2"

    # The marketplace opens a conversation over the API.
    response = requests.post(
        f"{live_server.url}/api/v1/conversations",
        json={"participants": [{"number": "+1 201 555 0101"}, {"number": "+1 201 555 0102"}], "external_id": "ride-7"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    conversation_id = response.json()["id"]
    alice_dials = response.json()["participants"][0]["proxy_number"]

    page.reload()
    assert _figure(page, "open-conversations") == "1"
    assert _pool_cell(page, "busiest") == "1"
    assert _pool_cell(page, "headroom") == "1"
    assert _figure(page, "calls") == "0"

    # Alice calls the number she was given; the sandbox plays Vonage and Bob answers.
    call_command(
        "simulate_call",
        "--from",
        ALICE,
        "--to",
        alice_dials,
        "--url",
        live_server.url,
        "--duration",
        "95",
        stdout=io.StringIO(),
    )
    page.reload()
    assert _figure(page, "calls") == "1"
    assert _figure(page, "answer-rate") == "100%"
    assert _figure(page, "minutes") == "2"

    # Find it by a real number typed the way people type it; numbers are shown masked.
    _nav(page, "Conversations")
    page.fill("#searchbar", "+1 (201) 555-0101")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q="))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "1201****101" in rows.first.inner_text()
    assert "1201****102" in rows.first.inner_text()
    assert ALICE not in page.content() and BOB not in page.content()

    rows.first.locator("a").first.click()
    page.wait_for_url(re.compile(conversation_id))
    assert "ride-7" in page.content()
    assert "1201****101" in page.content() and ALICE not in page.content()

    # Its call, with the event timeline.
    page.locator("a[href*='/admin/proxy/call/'][href$='/change/']").first.click()
    page.wait_for_selector("#timeline")
    assert page.locator("#timeline li").count() >= 3
    assert "completed" in page.locator("#timeline").inner_text()
    assert ALICE not in page.content()
    page.go_back()

    # Close it from its page.
    page.locator('a[href$="/close/"]', has_text="Close").click()
    page.click("#confirm-action")
    page.wait_for_selector("text=The conversation is closed")
    assert Conversation.objects.get(pk=conversation_id).status == "closed"

    # The dashboard figures move back.
    _nav(page, "Pool health")
    assert _figure(page, "open-conversations") == "0"
    assert _pool_cell(page, "headroom") == "2"
    page.screenshot(path=str(ARTIFACTS / "pool-health.png"), full_page=True)
    assert (ARTIFACTS / "pool-health.png").stat().st_size > 10_000
