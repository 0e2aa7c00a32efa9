from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from proxy.api_keys import hash_key
from proxy.models import ApiKey, Conversation, Service
from virtual_numbers.models import VirtualNumber


def run() -> list[str]:
    out = StringIO()
    call_command("seed_demo", "--url", "http://127.0.0.1:8000", stdout=out)
    return out.getvalue().strip().splitlines()


def test_seed_demo_builds_a_working_demo_and_can_run_again(db):
    first = run()
    second = run()
    service = Service.objects.get(slug="demo")
    # The key is printed alone on the last line; only the newest one still works.
    assert ApiKey.objects.get(key_hash=hash_key(second[-1])).revoked_at is None
    assert ApiKey.objects.get(key_hash=hash_key(first[-1])).revoked_at is not None
    pool = VirtualNumber.objects.filter(service=service)
    assert pool.filter(country="US").count() == 4 and pool.filter(country="GB").count() == 2
    assert all(n.linked_app_id for n in pool)
    assert Conversation.objects.filter(service=service, status="open").count() == 1
    assert any("simulate_call --from 12015550101" in line for line in second)


def test_seed_demo_refuses_to_run_against_a_live_provider(db, settings):
    """It buys numbers and creates a superuser: never on a real Vonage account."""
    import pytest
    from django.contrib.auth import get_user_model
    from django.core.management.base import CommandError

    settings.VONAGE_PROVIDER = "vonage"
    settings.VONAGE_API_KEY, settings.VONAGE_API_SECRET = "key", "secret"
    with pytest.raises(CommandError, match="sandbox"):
        run()
    assert not Service.objects.filter(slug="demo").exists()
    assert not get_user_model().objects.exists()


def test_seed_demo_with_debug_off_gives_admin_a_generated_password(db, settings):
    from django.contrib.auth import get_user_model

    settings.DEBUG = False
    lines = run()
    admin = get_user_model().objects.get(username="admin")
    assert not admin.check_password("admin")
    (login,) = [line for line in lines if "/admin/" in line and "password" in line]
    password = login.rsplit("password ", 1)[1].rstrip(")").strip()
    assert len(password) >= 16 and admin.check_password(password)
