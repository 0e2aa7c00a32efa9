"""Services (tenants), conversations, participants, calls and the outboxes.

Numbers are stored as E.164 digits without ``+`` everywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def prefetched(instance: models.Model, accessor: str, objects: Iterable[models.Model]) -> None:
    """Make ``instance.<accessor>.all()`` answer ``objects`` without a query.

    For rows a service has just written and holds in memory: it fills the same cache
    ``prefetch_related`` fills, so serialisers read them as if prefetched.
    """
    manager = getattr(instance, accessor)
    queryset = manager.get_queryset()
    queryset._result_cache = list(objects)
    queryset._prefetch_done = True
    cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    cache[manager.field.remote_field.cache_name] = queryset


def _default_ttl() -> int:
    return settings.PROXY_DEFAULT_TTL


def _default_cooldown() -> int:
    return settings.PROXY_DEFAULT_COOLDOWN


def _default_rate() -> int:
    return settings.PROXY_DEFAULT_RATE_LIMIT


def _default_country() -> str:
    return settings.PROXY_DEFAULT_COUNTRY


NOT_ALLOWED_TEXT = "Sorry, this call cannot be connected. Goodbye."


class Service(models.Model):
    """One marketplace app: a tenant with its own pool, keys and texts."""

    class RecordingPolicy(models.TextChoices):
        NEVER = "never", "Never record"
        PER_CONVERSATION = "per_conversation", "When the conversation asks"
        ALWAYS = "always", "Always record"

    class InterceptOnError(models.TextChoices):
        ALLOW = "allow", "Connect the call"
        BLOCK = "block", "Block the call"

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    is_active = models.BooleanField(default=True)
    default_ttl = models.PositiveIntegerField(default=_default_ttl, help_text="Seconds a conversation stays open.")
    default_country = models.CharField(max_length=2, default=_default_country, help_text="ISO 3166-1 alpha-2.")
    cooldown = models.PositiveIntegerField(
        default=_default_cooldown,
        help_text="Seconds an ended conversation's (real number, proxy number) pairs stay out of allocation; 0 = off.",
    )
    rate_limit = models.PositiveIntegerField(default=_default_rate, help_text="API requests per second.")

    # What callers hear.
    language = models.CharField(max_length=10, default="en-US", help_text="BCP-47 language of spoken texts.")
    voice_style = models.PositiveSmallIntegerField(default=0)
    greeting_text = models.CharField(
        max_length=1500, blank=True, default="", help_text="Said to the caller before connecting (optional)."
    )
    recording_notice_text = models.CharField(max_length=1500, default="This call is recorded.")
    unknown_caller_text = models.CharField(
        max_length=1500, default="Sorry, we could not find a conversation for your number. Goodbye."
    )
    ended_text = models.CharField(max_length=1500, default="This conversation has ended. Goodbye.")
    unavailable_text = models.CharField(
        max_length=1500, default="The person you are calling is not available right now. Please try again later."
    )
    not_allowed_text = models.CharField(
        max_length=1500,
        default=NOT_ALLOWED_TEXT,
        db_default=NOT_ALLOWED_TEXT,
        help_text="Said to a caller the intercept hook blocks.",
    )
    sms_template = models.CharField(
        max_length=1000,
        default="{service}: to reach {counterpart}, call {proxy_number}.",
        help_text="Placeholders: {service}, {name}, {counterpart}, {proxy_number}.",
    )
    # Defaults of conversations' ring_timeout and call_time_limit.
    connect_timeout = models.PositiveSmallIntegerField(default=45, help_text="Seconds the other party's phone rings.")
    call_time_limit = models.PositiveIntegerField(default=7200, help_text="Maximum call length in seconds.")
    recording_policy = models.CharField(
        max_length=20, choices=RecordingPolicy.choices, default=RecordingPolicy.PER_CONVERSATION
    )

    # Marketplace callbacks.
    callback_url = models.URLField(blank=True, default="")
    callback_secret = models.CharField(max_length=200, blank=True, default="")
    # The secret a rotation replaced: callbacks and hooks carry its signature too for a
    # day after ``callback_secret_rotated_at`` (proxy.callbacks.signature_header).
    callback_secret_previous = models.CharField(max_length=200, blank=True, default="", db_default="")
    callback_secret_rotated_at = models.DateTimeField(null=True, blank=True)

    # Marketplace hooks, answered synchronously on the answer path (proxy.hooks).
    intercept_url = models.URLField(
        max_length=500,
        blank=True,
        default="",
        db_default="",
        help_text="Asked before a known caller is connected (optional).",
    )
    out_of_session_url = models.URLField(
        max_length=500,
        blank=True,
        default="",
        db_default="",
        help_text="Asked what to do with a caller who holds no open conversation on the number dialled (optional).",
    )
    intercept_on_error = models.CharField(
        max_length=5,
        choices=InterceptOnError.choices,
        default=InterceptOnError.ALLOW,
        db_default=InterceptOnError.ALLOW.value,
        help_text="When the intercept hook fails or answers anything but 2xx or 403.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A service's API key. Only its SHA-256 is stored; the key is shown once."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=16, help_text="First characters, to recognise the key.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.service})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def with_effective_status(self, status: str, now: datetime | None = None) -> ConversationQuerySet:
        """Filter on the status the API shows: an open conversation past expires_at is expired,
        before any sweep writes it down."""
        now = now or timezone.now()
        if status == Conversation.Status.OPEN:
            return self.filter(status=status, expires_at__gt=now)
        if status == Conversation.Status.EXPIRED:
            return self.filter(Q(status=status) | Q(status=Conversation.Status.OPEN, expires_at__lte=now))
        return self.filter(status=status)


class Conversation(models.Model):
    """A service's masked session between two participants."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"
        EXPIRED = "expired", "Expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by the composite indexes below, which start with it.
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="conversations", db_index=False)
    external_id = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    expires_at = models.DateTimeField()
    record = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    closed_reason = models.CharField(max_length=100, blank=True, default="")
    # Set at creation (the service's defaults unless the request gave its own); null in
    # conversations older than these fields, which use the service's.
    call_time_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Maximum call length in seconds.")
    ring_timeout = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Seconds the other party's phone rings."
    )
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["service", "-created_at"], name="conv_service_created"),
            models.Index(fields=["service", "external_id"], name="conv_service_external"),
            models.Index(fields=["expires_at"], condition=Q(status="open"), name="conv_open_expiry"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def effective_status(self) -> str:
        """Past its expiry an open conversation reads as expired before any sweep writes it down."""
        if self.status == self.Status.OPEN and self.expires_at <= timezone.now():
            return self.Status.EXPIRED
        return self.status

    @property
    def is_live(self) -> bool:
        return self.effective_status == self.Status.OPEN


class ParticipantQuerySet(models.QuerySet["Participant"]):
    def live(self, now: datetime | None = None) -> ParticipantQuerySet:
        """Participants whose pair routes calls now: open (``active``) and not past expiry."""
        return self.filter(active=True, conversation__expires_at__gt=now or timezone.now())


class Participant(models.Model):
    """A person in a conversation.

    ``proxy_number`` is the pool number this person dials to reach the other party,
    and the caller ID this person sees when the other party calls. ``active`` mirrors
    "the conversation is open" so that the routing invariant can be a partial unique
    index on this table alone.
    """

    class Validation(models.TextChoices):
        PENDING = "pending", "Pending"
        VALID = "valid", "Valid"
        INVALID = "invalid", "Invalid"
        UNKNOWN = "unknown", "Could not be checked"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="participants")
    # Indexed by participant_service_real, which starts with it.
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+", db_index=False)
    position = models.PositiveSmallIntegerField(default=0)
    real_number = models.CharField(max_length=15)
    name = models.CharField(max_length=100, blank=True, default="")
    country = models.CharField(max_length=2)
    proxy_number = models.ForeignKey(
        "numbers.VirtualNumber",
        on_delete=models.PROTECT,
        to_field="number",
        db_column="proxy_number",
        related_name="participants",
    )
    # The foreign key points at VirtualNumber.number, so the column holds the digits.
    proxy_number_id: str
    active = models.BooleanField(default=True)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    validation = models.CharField(max_length=10, choices=Validation.choices, default=Validation.PENDING)
    number_type = models.CharField(max_length=30, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    objects = ParticipantQuerySet.as_manager()

    class Meta:
        ordering = ["conversation_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["real_number", "proxy_number"],
                condition=Q(active=True),
                name="participant_unique_open_pair",
            ),
        ]
        indexes = [
            # Cooldown look-ups and stickiness: the latest pairs of a real number.
            models.Index(fields=["real_number", "proxy_number", "-created_at"], name="participant_pair_recent"),
            models.Index(fields=["service", "real_number"], name="participant_service_real"),
        ]

    def __str__(self) -> str:
        return f"{self.name or 'participant'} via {self.proxy_number_id}"


class Call(models.Model):
    """One Vonage call leg, kept current from its events."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Hook(models.TextChoices):
        INTERCEPT = "intercept", "Intercept"
        OUT_OF_SESSION = "out_of_session", "Out of session"

    uuid = models.CharField(max_length=64, unique=True)
    conversation_uuid = models.CharField(max_length=64, blank=True, default="", db_index=True)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls"
    )
    service = models.ForeignKey(Service, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    direction = models.CharField(max_length=10, choices=Direction.choices, blank=True, default="")
    from_participant = models.ForeignKey(
        Participant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    to_participant = models.ForeignKey(Participant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    from_number = models.CharField(max_length=64, blank=True, default="")
    to_number = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=20, blank=True, default="")
    detail = models.CharField(max_length=100, blank=True, default="")
    status_at = models.DateTimeField(null=True, blank=True, help_text="Timestamp of the event that set the status.")
    started_at = models.DateTimeField(null=True, blank=True)
    ringing_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration = models.PositiveIntegerField(null=True, blank=True)
    price = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    rate = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    network = models.CharField(max_length=20, blank=True, default="")
    # What a marketplace hook decided for this (inbound) leg, written at answer time.
    hook = models.CharField(max_length=20, choices=Hook.choices, blank=True, default="", db_default="")
    hook_outcome = models.CharField(
        max_length=20,
        blank=True,
        default="",
        db_default="",
        help_text="intercept: allowed, blocked, allowed_on_error, blocked_on_error; "
        "out of session: talk, connect, open, default.",
    )
    hook_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    hook_detail = models.CharField(
        max_length=200, blank=True, default="", db_default="", help_text="Why, without real numbers."
    )
    hook_ms = models.PositiveIntegerField(null=True, blank=True, help_text="How long the hook took to answer.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["conversation", "-created_at"], name="call_conversation_created")]

    def __str__(self) -> str:
        return self.uuid


class CallEvent(models.Model):
    """A raw event from Vonage, kept append-only for audit. Duplicates are stored once."""

    call = models.ForeignKey(Call, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    call_uuid = models.CharField(max_length=64, blank=True, default="", db_index=True)
    conversation_uuid = models.CharField(max_length=64, blank=True, default="")
    kind = models.CharField(max_length=20, help_text="status, record, input, transfer, machine, other")
    status = models.CharField(max_length=20, blank=True, default="")
    timestamp = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=20, default="event", help_text="Which webhook received it.")
    dedup_key = models.CharField(max_length=64, unique=True)
    payload = models.JSONField()
    # Set once the payload's personal data is gone (CALL_EVENT_RETENTION_DAYS).
    # db_default: processes still running the code before this field insert without it.
    payload_redacted = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["timestamp", "received_at"]
        indexes = [
            # Only events still holding a payload: the retention job finds the old ones
            # without walking everything it redacted before.
            models.Index(fields=["received_at"], condition=Q(payload_redacted=False), name="callevent_unredacted_age")
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.status or '-'} {self.call_uuid}"


class Recording(models.Model):
    """A call recording announced by a record event, downloaded by a worker."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending download"
        DOWNLOADED = "downloaded", "Downloaded"
        FAILED = "failed", "Failed"

    recording_uuid = models.CharField(max_length=64, unique=True)
    call = models.ForeignKey(Call, on_delete=models.SET_NULL, null=True, blank=True, related_name="recordings")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="recordings"
    )
    conversation_uuid = models.CharField(max_length=64, blank=True, default="")
    recording_url = models.URLField(max_length=500)
    size = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    file = models.FileField(upload_to="recordings/%Y/%m/", blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a failed download is tried again.")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.recording_uuid


class Notification(models.Model):
    """The SMS outbox: one row per message telling a participant the number to call."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="notifications")
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+")
    to_number = models.CharField(max_length=15)
    from_number = models.CharField(max_length=15)
    text = models.CharField(max_length=1600)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    message_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    price = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "updated_at"], name="notification_status")]

    def __str__(self) -> str:
        return f"SMS {self.pk} {self.status}"


class CallbackDelivery(models.Model):
    """The marketplace-callback outbox: one row per event POSTed to a service's callback URL."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="callback_deliveries")
    event = models.CharField(max_length=50)
    payload = models.JSONField()
    url = models.URLField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "callback deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="callback_pending")]

    def __str__(self) -> str:
        return f"{self.event} → {self.url}"


class CallHangup(models.Model):
    """The call-control outbox: one row per call leg to hang up because its conversation ended.

    Written in the transaction that ended the conversation; a worker asks the provider
    (``PUT /v1/calls/{uuid}`` hangup), never the request that closed it.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Hung up"
        NOT_IN_PROGRESS = "not_in_progress", "Had already ended"
        FAILED = "failed", "Failed"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="hangups")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="hangup_pending")]

    def __str__(self) -> str:
        return f"hang up {self.call_id} ({self.status})"


class IdempotencyRecord(models.Model):
    """A remembered conversation creation, per service and Idempotency-Key, for 24 hours."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    # Written in the creation's own transaction: a request that dies before storing its
    # response still has its conversation found, never created twice.
    conversation = models.ForeignKey(Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service", "key"], name="idempotency_unique_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"idempotency key {self.key[:12]}"
