"""TLS, proxies and logins (issue 18): HSTS with TLS, X-Forwarded-* only from our proxies,
admin login throttling, and `check --deploy` clean on a production-like configuration."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model

from tests.test_fail_closed import PRODUCTION, ROOT

STRANGER = "203.0.113.9"
PROXY = "127.0.0.1"


def _django(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VONAGE_", "PUBLIC_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **PRODUCTION, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_on_a_production_like_configuration():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VONAGE_", "PUBLIC_", "DATABASE_"))},
            **PRODUCTION,
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "DJANGO_SECURE_SSL_REDIRECT": "true",
            "DJANGO_ALLOWED_HOSTS": "proxy.example.com",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_hsts_is_on_with_tls_and_off_without():
    code = "import django; django.setup(); from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS)"
    with_tls = _django(code, DJANGO_SECURE_SSL_REDIRECT="true")
    without = _django(code, DJANGO_SECURE_SSL_REDIRECT="false", PUBLIC_URL="https://proxy.example.com")
    assert int(with_tls.stdout.strip()) >= 31536000, with_tls.stderr
    assert int(without.stdout.strip()) == 0, without.stderr


def test_hsts_header_is_sent_over_tls(client, settings, db):
    settings.SECURE_HSTS_SECONDS = 31536000
    response = client.get("/health", secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")


@pytest.mark.parametrize(("peer", "secure"), [(STRANGER, False), (PROXY, True)])
def test_x_forwarded_proto_counts_only_from_a_configured_proxy(client, settings, db, peer, secure):
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/health", REMOTE_ADDR=peer, HTTP_X_FORWARDED_PROTO="https")
    # Not secure: the HTTPS redirect; secure: served.
    assert (response.status_code != 301) is secure


def test_the_trusted_proxies_come_from_the_environment():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(sorted(str(n) for n in s.TRUSTED_PROXY_NETWORKS))"
    )
    result = _django(code, DJANGO_TRUSTED_PROXIES="10.0.0.0/8,192.0.2.7")
    assert result.stdout.strip() == "['10.0.0.0/8', '192.0.2.7/32']", result.stderr
    bad = _django(code, DJANGO_TRUSTED_PROXIES="not-an-address")
    assert bad.returncode != 0 and "DJANGO_TRUSTED_PROXIES" in bad.stderr


# --- Admin login throttling ---------------------------------------------------------------------


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("ops", password="right-password-0123", is_staff=True)


def _login(client, password: str, *, peer: str = STRANGER, forwarded: str = "") -> int:
    extra = {"REMOTE_ADDR": peer}
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    response = client.post("/admin/login/?next=/admin/", {"username": "ops", "password": password}, **extra)
    return response.status_code


def test_repeated_wrong_passwords_lock_the_login_out(client, staff):
    for _ in range(4):
        assert _login(client, "wrong") == 200  # the form again, with an error
    assert _login(client, "wrong") == 429  # the fifth locks the address out
    assert _login(client, "right-password-0123") == 429
    client.logout()
    assert _login(client, "right-password-0123", peer="198.51.100.20") == 302  # another address


def test_a_forged_x_forwarded_for_does_not_dodge_the_lockout(client, staff):
    for n in range(5):
        _login(client, "wrong", forwarded=f"198.51.100.{n}")
    assert _login(client, "right-password-0123", forwarded="198.51.100.99") == 429


def test_behind_our_proxy_each_client_address_counts_on_its_own(client, staff):
    for _ in range(5):
        _login(client, "wrong", peer=PROXY, forwarded="198.51.100.1")
    assert _login(client, "right-password-0123", peer=PROXY, forwarded="198.51.100.1") == 429
    assert _login(client, "right-password-0123", peer=PROXY, forwarded="198.51.100.2") == 302
