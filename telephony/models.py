"""The sandbox's state: what a Vonage account would hold, kept in the product's database.

Keeping it in tables (not in memory) lets the web process, Celery workers, the
sandbox HTTPS server and the try-it page all see one account. Numbers for sale are
not stored: they are generated per country (``telephony.sandbox.inventory``); only
numbers the sandbox account rents are rows here.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class SandboxNumber(models.Model):
    """A number the sandbox account rents (Vonage's ``/account/numbers``)."""

    msisdn = models.CharField(max_length=15, unique=True)
    country = models.CharField(max_length=2)
    number_type = models.CharField(max_length=20)
    features = models.JSONField(default=list)
    cost = models.CharField(max_length=20, default="0.90")
    app_id = models.CharField(max_length=64, blank=True, default="")
    mo_http_url = models.CharField(max_length=500, blank=True, default="")
    bought_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["msisdn"]

    def __str__(self) -> str:
        return f"sandbox number {self.msisdn[:5]}…"


class SandboxMessage(models.Model):
    """An SMS (one part) accepted by the sandbox's ``/sms/json``."""

    message_id = models.CharField(max_length=32, unique=True)
    from_number = models.CharField(max_length=30)
    to_number = models.CharField(max_length=20)
    text = models.TextField()
    message_type = models.CharField(max_length=10, default="text")
    client_ref = models.CharField(max_length=100, blank=True, default="")
    callback = models.CharField(max_length=500, blank=True, default="")
    part = models.PositiveSmallIntegerField(default=1)
    price = models.CharField(max_length=20, default="0.00750000")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"sandbox SMS {self.message_id}"


class SandboxCall(models.Model):
    """A call leg the sandbox knows: played by the call player or controlled over ``/v1/calls``."""

    uuid = models.CharField(max_length=64, unique=True)
    conversation_uuid = models.CharField(max_length=64, blank=True, default="")
    direction = models.CharField(max_length=10, default="inbound")
    from_number = models.CharField(max_length=64, blank=True, default="")
    to_number = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=20, default="started")
    rate = models.CharField(max_length=20, blank=True, default="")
    price = models.CharField(max_length=20, blank=True, default="")
    duration = models.PositiveIntegerField(null=True, blank=True)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    network = models.CharField(max_length=20, blank=True, default="")
    # What call control did to the leg (hangup, transfer, talk, stream), for tests and the try-it page.
    actions = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"sandbox call {self.uuid}"


class SandboxRecording(models.Model):
    """A file the call player "made" (a recording, or a transcript of one); served at ``/v1/files/<id>``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    call_uuid = models.CharField(max_length=64, blank=True, default="")
    content = models.BinaryField()
    content_type = models.CharField(max_length=50, default="audio/mpeg")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"sandbox recording {self.id}"


class SandboxFailure(models.Model):
    """Fail the next ``remaining`` requests whose path starts with ``path`` (failure injection)."""

    class Mode(models.TextChoices):
        THROTTLE = "throttle", "Throttled (SMS/Number Insight status 1, else HTTP 429)"
        SERVER_ERROR = "5xx", "HTTP 500"
        TIMEOUT = "timeout", "No answer until the client gives up"
        PERMANENT = "permanent", "A refusal that retrying cannot fix"

    path = models.CharField(max_length=200)
    mode = models.CharField(max_length=10, choices=Mode.choices)
    remaining = models.PositiveIntegerField(default=1)
    hold_seconds = models.FloatField(default=5.0, help_text="How long a timeout holds the request.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"fail {self.path} with {self.mode} x{self.remaining}"
