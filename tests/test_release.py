"""config/release.py: the Procfile's ``release`` (migrate once, roles, deploy checks)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection, connections

from config.release import MIGRATION_LOCK_ID, migration_lock

ROOT = Path(__file__).resolve().parent.parent


def _release(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VONAGE_", "DATABASE_", "REDIS_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "release-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            "VONAGE_PROVIDER": "sandbox",
            "VONAGE_SIGNATURE_SECRET": "release-test-signature-secret",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "config.release"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_release_migrates_sets_up_roles_and_checks(tmp_path):
    database = tmp_path / "release.sqlite3"
    result = _release(f"sqlite:///{database}")

    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("release: ")]
    assert steps == ["release: migrate", "release: setup_roles", "release: check --deploy", "release: done"]
    with sqlite3.connect(database) as db:
        groups = {name for (name,) in db.execute("SELECT name FROM auth_group")}
        applied = db.execute("SELECT count(*) FROM django_migrations WHERE app = 'proxy'").fetchone()[0]
    assert groups == {"Operators", "Administrators"}
    assert applied > 0


def test_a_failed_step_stops_the_release(tmp_path):
    result = _release(f"sqlite:///{tmp_path / 'no-such-directory' / 'db.sqlite3'}")

    assert result.returncode != 0
    assert "release: setup_roles" not in result.stdout
    assert "release: done" not in result.stdout


def test_the_lock_is_a_no_op_without_postgresql():
    class NotPostgres:
        vendor = "sqlite"

        def cursor(self):
            raise AssertionError("no SQL on SQLite")

    with migration_lock(NotPostgres()):
        pass


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_release_waits_for_the_first_ones_migrations():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: advisory locks")
    other = connections.create_connection("default")
    try:

        def other_can_lock() -> bool:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_ID])
                taken = cursor.fetchone()[0]
                if taken:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])
                return taken

        with migration_lock(connection):
            assert other_can_lock() is False
        assert other_can_lock() is True
    finally:
        other.close()
