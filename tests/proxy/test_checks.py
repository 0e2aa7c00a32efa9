from django.core.checks import run_checks


def test_deploy_check_warns_without_redis(settings):
    settings.REDIS_URL = ""
    assert "proxy.W001" in {m.id for m in run_checks(include_deployment_checks=True)}


def test_no_redis_warning_with_redis(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert "proxy.W001" not in {m.id for m in run_checks(include_deployment_checks=True)}
