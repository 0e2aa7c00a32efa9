"""Masked messages: texts relayed between participants, sent by services, or kept unrelayed.

Registered through ``proxy.models`` (which imports this module); foreign keys name the
other models as strings, so this module imports nothing of that one. Numbers are E.164
digits without ``+``. Text and real numbers are personal data: ``redacted`` marks a row
whose text and real numbers were removed (``proxy.messaging.messages_redact``).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Message(models.Model):
    """One text, and the outbox row of the SMS that carries it on when there is one.

    ``relay``: a participant's text, sent on to the other participant from that
    participant's proxy number. ``platform``: the service's own text to a participant
    (API). ``auto_reply``: the service's answer to a text out of session. ``inbound``: a
    text kept for audit and not relayed (out of session, a keyword, a number outside
    every pool). ``from_number``/``to_number`` are the SMS this row sends, or for
    ``inbound`` the SMS received.
    """

    class Kind(models.TextChoices):
        RELAY = "relay", "Relayed from a participant"
        PLATFORM = "platform", "Sent by the service"
        AUTO_REPLY = "auto_reply", "Auto-reply out of session"
        INBOUND = "inbound", "Received, not relayed"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        HELD = "held", "Held (over a cap)"
        RECEIVED = "received", "Kept, not relayed"

    class Reason(models.TextChoices):
        """Why a text was not relayed (or not sent)."""

        NONE = "", "—"
        OUT_OF_SESSION = "out_of_session", "Sender holds no open conversation on this number"
        OPT_OUT = "opt_out", "Opt-out keyword (STOP)"
        OPT_IN = "opt_in", "Opt-in keyword (START)"
        CONVERSATION_LIMIT = "conversation_limit", "Over the conversation's message cap"
        SERVICE_LIMIT = "service_limit", "Over the service's message cap"
        RECIPIENT_OPTED_OUT = "recipient_opted_out", "The recipient opted out"
        BINARY = "binary", "Binary message"
        NO_TEXT = "no_text", "No text"
        TOO_LONG = "too_long", "Text too long"
        BAD_SENDER = "bad_sender", "Sender is not a valid number"
        UNKNOWN_NUMBER = "unknown_number", "Sent to a number outside every pool"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=20, choices=Reason.choices, blank=True, default="")
    # Null for a text to a number outside every pool.
    service = models.ForeignKey("proxy.Service", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # Indexed by message_conversation_created, which starts with it.
    conversation = models.ForeignKey(
        "proxy.Conversation",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="messages",
        db_index=False,
    )
    from_participant = models.ForeignKey(
        "proxy.Participant", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    to_participant = models.ForeignKey(
        "proxy.Participant", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    from_number = models.CharField(max_length=64, blank=True, default="")
    to_number = models.CharField(max_length=64, blank=True, default="")
    text = models.TextField(blank=True, default="")
    encoding = models.CharField(max_length=10, blank=True, default="text", help_text="text, unicode or binary.")
    # Vonage's ids of the inbound SMS (one per part of a concatenated message).
    inbound_ids = models.JSONField(default=list, blank=True)
    parts = models.PositiveSmallIntegerField(default=1, help_text="Inbound parts joined into this text.")
    # The outbound SMS.
    message_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    price = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a queued SMS is due (next try).")
    redacted = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The API's list, newest first, and the per-conversation cap's count.
            models.Index(fields=["conversation", "-created_at"], name="message_conversation_created"),
            # The outbox redrive: only rows still waiting to be sent.
            models.Index(fields=["next_attempt_at"], condition=Q(status="queued"), name="message_queued_due"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk} ({self.status})"

    @property
    def api_status(self) -> str:
        """The status the API and callbacks show: queued, sent, delivered or failed.

        A held text was not relayed: failed, unless staff relay it after all.
        """
        if self.status in (self.Status.HELD, self.Status.RECEIVED):
            return self.Status.FAILED
        return self.status


class MessagePart(models.Model):
    """One part of a concatenated inbound SMS, waiting (a bounded time) for the others.

    Deleted once its text is joined into a ``Message``: the message keeps the parts' ids.
    """

    message_id = models.CharField(max_length=64, unique=True, help_text="Vonage's id of this part.")
    from_number = models.CharField(max_length=64)
    to_number = models.CharField(max_length=64)
    ref = models.CharField(max_length=20, help_text="concat-ref: the same for every part of one message.")
    total = models.PositiveSmallIntegerField()
    part = models.PositiveSmallIntegerField()
    text = models.TextField(blank=True, default="")
    encoding = models.CharField(max_length=10, blank=True, default="text")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["received_at", "id"]
        indexes = [
            models.Index(fields=["from_number", "to_number", "ref"], name="messagepart_group"),
            models.Index(fields=["received_at"], name="messagepart_age"),
        ]

    def __str__(self) -> str:
        return f"part {self.part}/{self.total} of {self.ref}"


class MessageContact(models.Model):
    """What a service knows of someone who texts its numbers: opted out or not, last auto-reply.

    An opted-out number gets no SMS from the service (notifications, relayed texts,
    auto-replies) until it texts START. Kept for as long as the opt-out stands.
    """

    service = models.ForeignKey("proxy.Service", on_delete=models.CASCADE, related_name="+")
    real_number = models.CharField(max_length=15)
    opted_out = models.BooleanField(default=False)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    opted_in_at = models.DateTimeField(null=True, blank=True)
    auto_replied_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "opt-out"
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["service", "real_number"], name="messagecontact_unique_number"),
        ]

    def __str__(self) -> str:
        return f"contact {self.pk} of service {self.service_id}"


class MessageCounter(models.Model):
    """Texts relayed per service per minute, for the service's cap, in a few shards.

    Counted in PostgreSQL (Redis stays off the message path). The shards keep
    concurrent relays from queueing on one row lock.
    """

    service = models.ForeignKey("proxy.Service", on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    shard = models.PositiveSmallIntegerField(default=0)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service", "window_start", "shard"], name="messagecounter_unique_window"),
        ]

    def __str__(self) -> str:
        return f"{self.count} texts from {self.window_start:%H:%M}"
