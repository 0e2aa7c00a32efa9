from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from telephony.checks import vonage_deploy_check
from telephony.registry import get_provider
from telephony.sandbox.provider import SandboxProvider
from telephony.vonage_provider import VonageProvider


@pytest.fixture
def no_credentials(settings):
    settings.VONAGE_APPLICATION_ID = ""
    settings.VONAGE_PRIVATE_KEY = ""
    settings.VONAGE_API_KEY = ""
    settings.VONAGE_API_SECRET = ""
    settings.VONAGE_SIGNATURE_SECRET = ""
    settings.VONAGE_PROVIDER = ""
    return settings


def test_without_credentials_the_sandbox_serves(no_credentials):
    assert isinstance(get_provider(), SandboxProvider)


def test_with_credentials_vonage_serves(no_credentials, private_key_pem):
    no_credentials.VONAGE_APPLICATION_ID = "app"
    no_credentials.VONAGE_PRIVATE_KEY = private_key_pem
    provider = get_provider()
    assert isinstance(provider, VonageProvider)
    assert provider.application_id == "app"


def test_provider_setting_forces_the_sandbox(no_credentials):
    no_credentials.VONAGE_API_KEY = "k"
    no_credentials.VONAGE_API_SECRET = "s"
    no_credentials.VONAGE_PROVIDER = "sandbox"
    assert isinstance(get_provider(), SandboxProvider)


def test_unknown_provider_setting_fails_loudly(no_credentials):
    no_credentials.VONAGE_PROVIDER = "twilio"
    with pytest.raises(ImproperlyConfigured):
        get_provider()


def test_deploy_check_warns_about_each_missing_secret(no_credentials):
    ids = {warning.id for warning in run_checks(include_deployment_checks=True)}
    assert {"telephony.W001", "telephony.W002", "telephony.W003"} <= ids


def test_deploy_check_is_quiet_when_everything_is_set(no_credentials):
    no_credentials.VONAGE_APPLICATION_ID = "app"
    no_credentials.VONAGE_PRIVATE_KEY = "key"
    no_credentials.VONAGE_API_KEY = "k"
    no_credentials.VONAGE_API_SECRET = "s"
    no_credentials.VONAGE_SIGNATURE_SECRET = "secret"
    assert vonage_deploy_check() == []


def test_deploy_check_only_runs_with_deploy(no_credentials):
    ids = {warning.id for warning in run_checks(include_deployment_checks=False)}
    assert not ids & {"telephony.W001", "telephony.W002", "telephony.W003"}
