"""Log lines: JSON in production, a request id on each, no whole real number in any.

- ``REQUEST_ID`` holds the current request's id (``config.middleware.RequestLogMiddleware``
  sets it from ``X-Request-ID`` or makes one). Celery carries it in a message header
  into the task, whose log lines then carry it too (the signal handlers below).
- ``WEBHOOK_OUTCOME`` is what a voice webhook did with the call, for the request's log
  line and the latency histogram: ``connected``, ``unknown``, ``ended``, and for the
  features that route by PIN or ask an intercept hook first, ``pin`` and
  ``intercepted``; ``error`` when answering failed. Code that decides sets it with
  ``webhook_outcome(...)``.
- ``RedactNumbers`` masks any run of eight or more digits left in a message: real
  numbers are masked where they are logged (``proxy.phone.mask``), this is the net.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
WEBHOOK_OUTCOMES = ("connected", "unknown", "ended", "pin", "intercepted", "error")
WEBHOOK_OUTCOME: ContextVar[str] = ContextVar("webhook_outcome", default="")

# The header a request id travels in, into a Celery task.
TASK_HEADER = "request_id"
_ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# E.164 digits as the product stores them (formatted numbers appear only in SMS texts).
# Not next to a decimal point: "0.073088015000394" is a duration and "1796288694.19" a
# time, not numbers to hide.
_DIGIT_RUN = re.compile(r"(?<![\d.])\+?\d{8,}(?![\d]|\.\d)")
# Ids are not numbers: a UUID's last group may be twelve digits, and Vonage's call and
# recording uuids are what staff look calls up by.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def webhook_outcome(outcome: str) -> None:
    """Say what the current voice webhook did with the call (one of ``WEBHOOK_OUTCOMES``)."""
    WEBHOOK_OUTCOME.set(outcome if outcome in WEBHOOK_OUTCOMES else "error")


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a new id."""
    if header and _ACCEPTABLE_ID.match(header):
        return header
    return uuid.uuid4().hex


def mask_digits(text: str) -> str:
    """Every run of 8+ digits keeps only its last three (UUIDs are left whole)."""

    def replace(match: re.Match[str]) -> str:
        digits = match.group(0).lstrip("+")
        return "*" * (len(digits) - 3) + digits[-3:]

    pieces, last = [], 0
    for uuid_match in _UUID.finditer(text):
        pieces.append(_DIGIT_RUN.sub(replace, text[last : uuid_match.start()]))
        pieces.append(uuid_match.group(0))
        last = uuid_match.end()
    pieces.append(_DIGIT_RUN.sub(replace, text[last:]))
    return "".join(pieces)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class RedactNumbers(logging.Filter):
    """Masks digit runs that could be phone numbers in the final message (and exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = mask_digits(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and record.exc_info[1] is not None:
            # Formatted once, masked, and kept as text (what every formatter falls back to).
            record.exc_text = mask_digits(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask_digits(record.exc_text)
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time, level, logger, message, request_id and any ``extra``."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "{asctime}{levelname}{name}{message}{request_id}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
    )


# --- The request id in Celery tasks ------------------------------------------------------------


@before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    current = REQUEST_ID.get()
    if headers is not None and current != "-":
        headers.setdefault(TASK_HEADER, current)


@task_prerun.connect
def _take_request_id(task: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    carried = getattr(request, TASK_HEADER, None) if request is not None else None
    if carried is None and request is not None:
        carried = (getattr(request, "headers", None) or {}).get(TASK_HEADER)
    if carried and not getattr(request, "is_eager", False):
        REQUEST_ID.set(str(carried))


@task_postrun.connect
def _drop_request_id(task: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    if request is not None and not getattr(request, "is_eager", False):
        REQUEST_ID.set("-")
