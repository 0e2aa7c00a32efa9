"""A Celery worker that stops dead in the middle of chosen tasks, for the worker-death test.

``python tests/faults/hanging_worker.py worker ...`` runs ``celery -A config worker ...``
after wrapping the sandbox provider and the callback delivery: with ``FAULT_HANG`` naming
a point (``insight``, ``sms``, ``callback``, ``recording``), the task writes a file named
after the point in ``FAULT_DIR`` there and then sleeps, until the test SIGKILLs the worker.

- ``insight``: before Number Insight answers (the numbers' check is under way);
- ``sms``: after the provider accepted the SMS, before the row says so;
- ``callback``: after the delivery was claimed, before the POST;
- ``recording``: after the file was fetched, before it is stored.
"""

from __future__ import annotations

import os
import sys
import time
from functools import wraps
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _hang(point: str) -> None:
    if point in os.environ.get("FAULT_HANG", "").split(","):
        (Path(os.environ["FAULT_DIR"]) / f"{point}-{os.getpid()}").touch()
        time.sleep(3600)


def _before(point: str, function: Any) -> Any:
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _hang(point)
        return function(*args, **kwargs)

    return wrapper


def _after(point: str, function: Any) -> Any:
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        _hang(point)
        return result

    return wrapper


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from proxy.delivery import callbacks
    from telephony.sandbox.provider import SandboxProvider

    SandboxProvider.number_insight = _before("insight", SandboxProvider.number_insight)  # type: ignore[method-assign]
    SandboxProvider.send_sms = _after("sms", SandboxProvider.send_sms)  # type: ignore[method-assign]
    SandboxProvider.download_file = _after("recording", SandboxProvider.download_file)  # type: ignore[method-assign]
    callbacks.callback_url_check = _before("callback", callbacks.callback_url_check)  # type: ignore[assignment]

    from celery.__main__ import main as celery_main

    sys.argv = ["celery", "-A", "config", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
