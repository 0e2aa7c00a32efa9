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
