"""Once per release, before the new code serves: ``python -m config.release`` (the Procfile's ``release``).

1. ``migrate``, under a PostgreSQL advisory lock: two hosts releasing at once migrate one
   after the other (the second finds nothing left to do) instead of racing on DDL.
2. ``setup_roles``: the staff groups get the permissions of any new model.
3. ``check --deploy``: warnings are printed for the operator; an error stops the release.

``collectstatic`` is not here: it writes to the local disk, so it runs where the files are
served from, when the code is built (the Dockerfile does it) or installed on each host.
Exits non-zero when any step fails, so the deployment stops before the new code serves.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# One lock id for this product's migrations, the same in every process and release.
MIGRATION_LOCK_ID = int.from_bytes(hashlib.sha256(b"masked-calling:migrate").digest()[:8], "big", signed=True)


@contextmanager
def migration_lock(connection: Any) -> Iterator[None]:
    """Hold a PostgreSQL session advisory lock on ``connection`` for the duration; no-op elsewhere.

    SQLite has a single writer and one host, so there is nothing to serialise.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_ID])
        if not cursor.fetchone()[0]:
            print("release: another release is migrating; waiting for it to finish", flush=True)
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_ID])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])


def main() -> int:
    """Run the release steps in order; 0 when all of them succeeded."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import CommandError, call_command
    from django.db import connection

    try:
        print("release: migrate", flush=True)
        with migration_lock(connection):
            call_command("migrate", interactive=False)
        print("release: setup_roles", flush=True)
        call_command("setup_roles")
        print("release: check --deploy", flush=True)
        call_command("check", deploy=True)
    except CommandError as exc:  # SystemCheckError included: its message is the whole report
        print(f"release failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print("release: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
