"""Failing closed (DESIGN.md): with DJANGO_DEBUG off the product will not load half-configured.

Each case loads the product in a fresh interpreter, as a deployment would, with an
environment that names everything explicitly and nothing inherited from this one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PEM = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DJANGO_SECRET_KEY": "fail-closed-test-secret-key-0123456789-abcdefghijklmnop",
    "DJANGO_DEBUG": "false",
    "DATABASE_URL": "sqlite:////tmp/fail-closed-never-opened.sqlite3",
    "PUBLIC_URL": "https://proxy.example.com",
    "VONAGE_PROVIDER": "vonage",
    "VONAGE_SIGNATURE_SECRET": "signature-secret-of-the-account",
    "VONAGE_APPLICATION_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "VONAGE_PRIVATE_KEY": PEM,
    "VONAGE_API_KEY": "abcd1234",
    "VONAGE_API_SECRET": "api-secret",
}

LOADERS = {
    "management command": [sys.executable, "manage.py", "check"],
    "WSGI application": [sys.executable, "-c", "import config.wsgi"],
    "worker": [sys.executable, "-c", "from config.celery import app; app.loader.import_default_modules()"],
}


def _load(env: dict[str, str], loader: str = "management command") -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VONAGE_", "PUBLIC_", "DATABASE_"))}
    return subprocess.run(
        LOADERS[loader], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def _without(*names: str, **changes: str) -> dict[str, str]:
    env = {k: v for k, v in PRODUCTION.items() if k not in names}
    env.update(changes)
    return env


def test_a_complete_production_configuration_loads():
    result = _load(PRODUCTION)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_every_entry_point_refuses_an_unchosen_provider(loader):
    result = _load(_without("VONAGE_PROVIDER"), loader)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "VONAGE_PROVIDER" in result.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (_without(VONAGE_PROVIDER="twilio"), "VONAGE_PROVIDER"),
        (_without("VONAGE_SIGNATURE_SECRET"), "VONAGE_SIGNATURE_SECRET"),
        (_without(VONAGE_SIGNATURE_SECRET="   "), "VONAGE_SIGNATURE_SECRET"),
        (_without(VONAGE_PROVIDER="sandbox", VONAGE_SIGNATURE_SECRET=""), "VONAGE_SIGNATURE_SECRET"),
        (_without("VONAGE_APPLICATION_ID"), "VONAGE_APPLICATION_ID"),
        (_without("VONAGE_PRIVATE_KEY"), "VONAGE_PRIVATE_KEY"),
        (_without("VONAGE_API_KEY"), "VONAGE_API_KEY"),
        (_without("VONAGE_API_SECRET"), "VONAGE_API_SECRET"),
        (_without(PUBLIC_URL="http://proxy.example.com"), "PUBLIC_URL"),
        (_without("PUBLIC_URL"), "PUBLIC_URL"),
    ],
    ids=[
        "unknown provider",
        "no secret",
        "blank secret",
        "sandbox without secret",
        "no application id",
        "no private key",
        "no api key",
        "no api secret",
        "http public url",
        "default public url",
    ],
)
def test_a_half_configured_production_refuses_to_load_and_names_the_variable(env, named):
    result = _load(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.splitlines()[-1]


def test_the_sandbox_may_serve_with_debug_off_when_chosen_and_signed():
    env = _without(
        "VONAGE_APPLICATION_ID",
        "VONAGE_PRIVATE_KEY",
        "VONAGE_API_KEY",
        "VONAGE_API_SECRET",
        VONAGE_PROVIDER="sandbox",
        PUBLIC_URL="http://127.0.0.1:8000",
    )
    result = _load(env)
    assert result.returncode == 0, result.stderr[-2000:]


def test_debug_on_keeps_the_no_configuration_quick_start():
    result = _load({"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "true"})
    assert result.returncode == 0, result.stderr[-2000:]
