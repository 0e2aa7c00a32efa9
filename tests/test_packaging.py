"""The Procfile, the image (Dockerfile, entry point, health check) and compose.yaml agree with the code.

hadolint and the Compose Specification's schema check run in .ci/run; these tests check
what a linter cannot: that every command names a program and module that exist, and that
the files agree with each other.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PROCESSES = ["web", "worker", "beat", "release"]
_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")

sys.path.insert(0, str(ROOT / "docker"))
healthcheck = importlib.import_module("healthcheck")
sys.path.remove(str(ROOT / "docker"))


def procfile() -> dict[str, list[str]]:
    """Process name -> its command's words, parsed as Procfile runners do (other lines ignored)."""
    entries: dict[str, list[str]] = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if match := _LINE.match(line):
            assert match[1] not in entries, f"{match[1]} appears twice"
            entries[match[1]] = shlex.split(match[2])
    return entries


def _option(words: list[str], *names: str) -> str:
    for i, word in enumerate(words):
        if word in names:
            return words[i + 1]
        for name in names:
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    raise AssertionError(f"no {names} in {words}")


def _importable(dotted: str) -> Any:
    module, _, attribute = dotted.partition(":")
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    return getattr(importlib.import_module(module), attribute) if attribute else None


def test_procfile_names_exactly_the_four_processes():
    assert list(procfile()) == PROCESSES


def test_web_is_gunicorn_with_the_config_file_and_the_wsgi_app():
    words = procfile()["web"]
    assert words[0] == "gunicorn"
    assert (VENV_BIN / "gunicorn").is_file()
    assert (ROOT / _option(words, "-c", "--config")).is_file()
    assert words[-1] == "config.wsgi"
    assert importlib.util.find_spec("config.wsgi") is not None
    assert not any("$PORT" in word or "--bind" in word for word in words), "the config file reads PORT"


def test_worker_and_beat_are_celery_on_the_product_app():
    for name, subcommand in (("worker", "worker"), ("beat", "beat")):
        words = procfile()[name]
        assert words[0] == "celery"
        assert (VENV_BIN / "celery").is_file()
        assert _option(words, "-A", "--app") == "config"
        assert words[words.index("config") + 1] == subcommand
    assert importlib.import_module("config").celery_app.main == "masked_calling"
    scheduler = _option(procfile()["beat"], "--scheduler", "-S")
    assert scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    assert _importable(scheduler).__name__ == "DatabaseScheduler"


def test_worker_takes_its_queues_from_the_environment():
    """No -Q: a worker takes every queue unless CELERY_WORKER_QUEUES names some (config.celery),
    so CELERY_QUEUE's prefix applies and one line runs every worker group."""
    words = procfile()["worker"]
    assert "-Q" not in words
    assert "--queues" not in words
    assert _option(words, "--pool", "-P") == "${WORKER_POOL:-prefork}"


def test_release_runs_the_release_module():
    assert procfile()["release"] == ["python", "-m", "config.release"]
    assert (VENV_BIN / "python").exists()
    assert callable(_importable("config.release:main"))


# --- The entry point ---------------------------------------------------------------


def _entrypoint(tmp_path: Path, *args: str, procfile_text: str, env: dict[str, str] | None = None):
    (tmp_path / "Procfile").write_text(procfile_text)
    return subprocess.run(
        ["sh", str(ROOT / "docker" / "entrypoint.sh"), *args],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_entrypoint_runs_the_procfile_line_web_by_default(tmp_path):
    text = 'web: printf "web on %s" "${PORT:-none}"\nworker: printf "worker x%s" "${WORKER_CONCURRENCY:-4}"\n'
    assert _entrypoint(tmp_path, procfile_text=text, env={"PORT": "8123"}).stdout == "web on 8123"
    assert _entrypoint(tmp_path, "worker", procfile_text=text).stdout == "worker x4"


def test_entrypoint_runs_any_other_command_as_given(tmp_path):
    result = _entrypoint(tmp_path, "printf", "%s|", "a b", "web", procfile_text="web: false\n")
    assert result.stdout == "a b|web|"


def test_entrypoint_fails_for_a_process_missing_from_the_procfile(tmp_path):
    result = _entrypoint(tmp_path, "beat", procfile_text="web: true\n")
    assert result.returncode == 64
    assert "no 'beat' line" in result.stderr


# --- The Dockerfile and what it copies ---------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_shape():
    instructions = _instructions()
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", next(a for i, a in instructions if i == "FROM"))
    runs = " ".join(a for i, a in instructions if i == "RUN")
    assert "--require-hashes" in runs and "-r /tmp/requirements.lock" in runs
    assert "collectstatic --noinput" in runs
    user = [a for i, a in instructions if i == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert [a for i, a in instructions if i == "ENTRYPOINT"] == ['["/bin/sh", "/app/docker/entrypoint.sh"]']
    assert [a for i, a in instructions if i == "CMD"] == ['["web"]']
    assert "docker/healthcheck.py" in next(a for i, a in instructions if i == "HEALTHCHECK")


def test_collectstatic_at_build_needs_no_secret():
    """The build's RUN sets the only variables the settings get: they must load with DEBUG off."""
    run = next(a for i, a in _instructions() if i == "RUN" and "collectstatic" in a)
    build_env = dict(re.findall(r"\b([A-Z_]+)=(\S+)", run.split("python manage.py")[0]))
    assert build_env["DJANGO_DEBUG"] == "false"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VONAGE_", "DATABASE_", "REDIS_"))}
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--dry-run", "--verbosity", "0"],
        cwd=ROOT,
        env={**env, **build_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``*`` and ``?`` stay within one folder, ``**`` spans any."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] in "*?":
            regex, i = regex + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex + r"\Z")


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (a matched folder takes its files)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        regex = _pattern(pattern.lstrip("!").strip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not pattern.startswith("!")
    return ignored


def test_dockerignore_keeps_what_the_image_runs():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = [
        "Procfile",
        "manage.py",
        "requirements.lock",
        "docker/entrypoint.sh",
        "docker/healthcheck.py",
        "config/gunicorn.py",
        "config/release.py",
        "templates/admin/index.html",
    ]
    needed += [f"{app}/__init__.py" for app in ("proxy", "virtual_numbers", "webhooks", "telephony")]
    assert [path for path in needed if _ignored(path, patterns)] == []
    assert all(
        _ignored(path, patterns)
        for path in (".venv/bin/python", ".git/HEAD", "var/db.sqlite3", "tests/x.py", "proxy/__pycache__/a.pyc")
    )


# --- The container health check ---------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        ("", "localhost"),
        ("*", "localhost"),
        ("calls.example.com, localhost", "calls.example.com"),
        (".example.com", "example.com"),
        ("*.example.com,web", "web"),
    ],
)
def test_healthcheck_names_an_allowed_host(monkeypatch, allowed, host):
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", allowed)
    assert healthcheck.allowed_host() == host


def test_healthcheck_probes_only_a_web_container(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/opt/venv/bin/python\0/opt/venv/bin/gunicorn\0-c\0config/gunicorn.py\0config.wsgi\0")
    assert healthcheck.serves_http(cmdline) is True
    cmdline.write_bytes(b"/opt/venv/bin/python\0/opt/venv/bin/celery\0-A\0config\0worker\0")
    assert healthcheck.serves_http(cmdline) is False
    assert healthcheck.serves_http(tmp_path / "absent") is True


# --- compose.yaml --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_runs_every_process_from_the_image(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "worker-http", *PROCESSES}
    for name in [*PROCESSES, "worker-http"]:
        assert services[name]["command"] == [name.removesuffix("-http")], "the entry point runs that Procfile line"
        assert services[name]["build"] == "."
        assert services[name]["image"] == services["web"]["image"]


def test_compose_worker_groups_take_every_queue_between_them(compose):
    from config.celery import QUEUES

    groups = [compose["services"][name]["environment"]["CELERY_WORKER_QUEUES"] for name in ("worker", "worker-http")]
    taken = [queue for group in groups for queue in group.split(",")]
    assert sorted(taken) == sorted(QUEUES), "each queue consumed by exactly one group"
    assert compose["services"]["worker-http"]["environment"]["WORKER_POOL"] == "threads"


def test_compose_order_postgres_then_release_then_the_rest(compose):
    services = compose["services"]
    assert services["release"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["release"]["restart"] == "no"
    for name in ("web", "worker", "worker-http", "beat"):
        assert services[name]["depends_on"]["release"] == {"condition": "service_completed_successfully"}
    for name, deps in ((n, s.get("depends_on", {})) for n, s in services.items()):
        assert set(deps) <= set(services), f"{name} depends on a service that does not exist"
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "test" in services["postgres"]["healthcheck"] and "test" in services["redis"]["healthcheck"]


def test_compose_environment_fails_closed(compose):
    env = compose["x-app-environment"]
    assert env["VONAGE_PROVIDER"] == "sandbox"
    assert env["DJANGO_DEBUG"] == "false"
    assert env["VONAGE_SIGNATURE_SECRET"]
    assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:-")
    for name in [*PROCESSES, "worker-http"]:
        environment = compose["services"][name]["environment"]
        overridden = {"WORKER_CONCURRENCY"} if name == "worker-http" else set()
        assert {key: environment[key] for key in env if key not in overridden} == {
            key: value for key, value in env.items() if key not in overridden
        }


def test_compose_volumes_are_declared(compose):
    declared = set(compose.get("volumes", {}))
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in declared or source.startswith((".", "/")), f"undeclared volume {source}"
    # Recordings are written by the worker and served by web: one volume for both.
    assert "media:/app/var/media" in compose["services"]["web"]["volumes"]
    assert "media:/app/var/media" in compose["services"]["worker"]["volumes"]
