"""config/gunicorn.py: settings from the environment, and logs without real numbers."""

from __future__ import annotations

import logging
import os
import runpy
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "config" / "gunicorn.py"
VENV_BIN = Path(sys.executable).parent

_VARIABLES = (
    "PORT",
    "GUNICORN_BIND",
    "WEB_CONCURRENCY",
    "GUNICORN_TIMEOUT",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "GUNICORN_MAX_REQUESTS",
    "FORWARDED_ALLOW_IPS",
    "GUNICORN_ACCESS_LOG",
    "GUNICORN_CONTROL_SOCKET",
)


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """The config file's names, as gunicorn would read them with exactly ``env`` set."""
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONFIG_FILE))


def test_gunicorn_loads_the_file_and_binds_on_port():
    """gunicorn's own loader, as the Procfile runs it: the resolved settings it prints."""
    env = {k: v for k, v in os.environ.items() if k not in _VARIABLES}
    env.update({"PORT": "9137", "WEB_CONCURRENCY": "5", "DJANGO_SECRET_KEY": "test-only"})
    # Production settings fail closed: the provider and the signature secret must be explicit.
    env.update({"VONAGE_PROVIDER": "sandbox", "VONAGE_SIGNATURE_SECRET": "test-only-signature-secret"})
    out = subprocess.run(
        [VENV_BIN / "gunicorn", "-c", "config/gunicorn.py", "--print-config", "config.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    # One "name   = value" line per setting.
    settings = {k.strip(): v.strip() for k, v in (line.split(" = ", 1) for line in out.splitlines() if " = " in line)}
    assert settings["bind"] == "['0.0.0.0:9137']"
    assert settings["workers"] == "5"
    assert settings["worker_class"] == "sync"
    assert settings["preload_app"] == "True"
    assert settings["control_socket_disable"] == "True"
    assert "%(U)s" in settings["access_log_format"]


def test_defaults(monkeypatch):
    config = _load(monkeypatch)
    assert config["bind"] == ["0.0.0.0:8000"]
    assert config["workers"] == config["available_cores"]() + 1
    assert config["timeout"] == 30
    assert config["preload_app"] is True
    assert config["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert config["accesslog"] == "-"


def test_environment_overrides(monkeypatch):
    config = _load(
        monkeypatch,
        PORT="5000",
        WEB_CONCURRENCY="7",
        GUNICORN_TIMEOUT="12",
        GUNICORN_MAX_REQUESTS="1000",
        FORWARDED_ALLOW_IPS="10.0.0.5",
        GUNICORN_ACCESS_LOG="",
        GUNICORN_CONTROL_SOCKET="/run/masked/gunicorn.ctl",
    )
    assert config["bind"] == ["0.0.0.0:5000"]
    assert config["workers"] == 7
    assert config["timeout"] == 12
    assert (config["max_requests"], config["max_requests_jitter"]) == (1000, 100)
    assert config["forwarded_allow_ips"] == "10.0.0.5"
    assert config["accesslog"] is None
    assert config["control_socket"] == "/run/masked/gunicorn.ctl"
    assert "control_socket_disable" not in config


def test_gunicorn_bind_replaces_the_port(monkeypatch):
    assert _load(monkeypatch, PORT="5000", GUNICORN_BIND="unix:/run/app.sock")["bind"] == ["unix:/run/app.sock"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "eighty", "PORT must be a whole number, not 'eighty'"),
        ("PORT", "0", "PORT must be at least 1"),
        ("PORT", "70000", "PORT must be a TCP port"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be at least 1"),
        ("GUNICORN_TIMEOUT", "3.5", "GUNICORN_TIMEOUT must be a whole number"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, name, value, message):
    with pytest.raises(ValueError, match=message):
        _load(monkeypatch, **{name: value})


def test_cgroup_quota_caps_the_cores(monkeypatch, tmp_path):
    config = _load(monkeypatch)
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert config["cgroup_cpu_quota"](quota) == 1.5
    quota.write_text("max 100000\n")
    assert config["cgroup_cpu_quota"](quota) is None
    assert config["cgroup_cpu_quota"](tmp_path / "absent") is None


def _access_line(access_log_format: str, *, path: str, query: str) -> str:
    """The line gunicorn's logger writes for one request with this format."""
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", access_log_format)
    logger = Logger(cfg)
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect()
    logger.access_log.addHandler(handler)
    try:

        class Response:
            status = "200 OK"
            headers = [("Content-Type", "application/json"), ("X-Request-ID", "req-42")]
            sent = 99

        environ = {
            "REQUEST_METHOD": "GET",
            "RAW_URI": f"{path}?{query}",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.1.2.3",
            "HTTP_REFERER": f"https://example.com{path}?{query}",
        }
        logger.access(Response(), [("HOST", "example.com")], environ, timedelta(milliseconds=7))
    finally:
        logger.access_log.removeHandler(handler)
    return records[-1]


def test_access_log_has_the_path_and_never_the_query(monkeypatch):
    config = _load(monkeypatch)
    line = _access_line(config["access_log_format"], path="/webhooks/answer", query="from=447700900123&to=12015550200")
    assert line == '10.1.2.3 "GET /webhooks/answer" 200 99 7ms rid=req-42'
    assert "447700900123" not in line


def test_error_log_lines_lose_their_query_string(monkeypatch):
    redactor = _load(monkeypatch)["QueryStringRedactor"]()
    record = logging.LogRecord(
        "gunicorn.error",
        logging.ERROR,
        __file__,
        1,
        "Error handling request %s",
        ("/webhooks/answer?from=447700900123",),
        None,
    )
    assert redactor.filter(record) is True
    assert record.getMessage() == "Error handling request /webhooks/answer?[query removed]"
    plain = logging.LogRecord("gunicorn.error", logging.INFO, __file__, 1, "Booting worker with pid: %s", (42,), None)
    redactor.filter(plain)
    assert plain.getMessage() == "Booting worker with pid: 42"


def test_on_starting_installs_the_redactor(monkeypatch):
    config = _load(monkeypatch)
    error_log = logging.getLogger("gunicorn.error")
    before = list(error_log.filters)
    try:
        config["on_starting"](None)
        added = [f for f in error_log.filters if f not in before]
        assert [type(f).__name__ for f in added] == ["QueryStringRedactor"]
    finally:
        error_log.filters[:] = before
