"""Headless Chromium (Debian's package) driven by Playwright's sync API against live_server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The live server binds loopback on a port chosen at run time.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1:0")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def browser_page(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    if not CHROMIUM.exists():
        # A skip names what is missing; CI sets TEST_FORBID_SKIPS=1, so there it fails the run.
        pytest.skip(
            f"{CHROMIUM} is missing: browser tests need Debian's chromium "
            "(apt-get update && apt-get install -y chromium)."
        )
    # Playwright's sync API runs an event loop in this thread; Django's async-safety
    # check would otherwise refuse the ORM calls the test makes between page actions.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.set_default_timeout(15_000)
        page = context.new_page()
        yield page
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            page.screenshot(path=str(ARTIFACTS / f"failure-{request.node.name}.png"), full_page=True)
        context.close()
        browser.close()
    _close_live_server_connections()


def _close_live_server_connections() -> None:
    """End the idle PostgreSQL sessions the live server's request threads leave behind.

    Those threads are daemons that never close their persistent connections, and
    PostgreSQL refuses to drop the test database while any session is still on it.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'"
        )
