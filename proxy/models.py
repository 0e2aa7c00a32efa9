"""Services (tenants), conversations, participants, calls and the outboxes.

Numbers are stored as E.164 digits without ``+`` everywhere.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models
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


@functools.cache
def _insert_sql(model: type[models.Model], conflict: str | None) -> tuple[str, tuple[models.Field, ...]]:
    fields = tuple(f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, models.AutoField)))

    def quote(field: models.Field) -> str:
        return connection.ops.quote_name(str(field.column))

    table, columns = connection.ops.quote_name(model._meta.db_table), ", ".join(quote(f) for f in fields)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608 (model metadata)
    if conflict is not None:
        unique = model._meta.get_field(conflict)
        assert isinstance(unique, models.Field)
        sql += f" ON CONFLICT ({quote(unique)}) DO NOTHING"
    assert model._meta.pk is not None
    return f"{sql} RETURNING {quote(model._meta.pk)}", fields


def insert_row(instance: models.Model, *, unless_exists: str | None = None) -> bool:
    """INSERT a new ``instance`` as ``save()`` would, in one statement built once per model.

    For hot paths (the inbound SMS webhook), where compiling the ORM's INSERT costs more
    than running it. Sets the primary key. ``unless_exists``: a unique field; when a row
    already holds the instance's value there, nothing is written and False is returned.
    """
    sql, fields = _insert_sql(type(instance), unless_exists)
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return True


def _default_ttl() -> int:
    return settings.PROXY_DEFAULT_TTL


def _default_cooldown() -> int:
    return settings.PROXY_DEFAULT_COOLDOWN


def _default_rate() -> int:
    return settings.PROXY_DEFAULT_RATE_LIMIT


def _default_country() -> str:
    return settings.PROXY_DEFAULT_COUNTRY


def _default_retention() -> int:
    return settings.RETENTION_DEFAULT_DAYS


# Vonage's connect: ``limit`` at most 7200 s; ``timeout`` (ringing) is ours to bound. On the
# model, so that every way of changing a service keeps them (the API, the admin's form).
MIN_CALL_TIME_LIMIT = 1
MAX_CALL_TIME_LIMIT = 7200
MIN_RING_TIMEOUT = 5
MAX_RING_TIMEOUT = 120


def validate_retention_days(value: int) -> None:
    """1 day up to ``RETENTION_MAX_DAYS`` (the operator's documented ceiling, 90 by default)."""
    ceiling = settings.RETENTION_MAX_DAYS
    if not 1 <= value <= ceiling:
        raise ValidationError(f"Keep personal data between 1 and {ceiling} days.", code="retention_days")


def _default_message_limit_conversation() -> int:
    return settings.PROXY_DEFAULT_MESSAGE_LIMIT_CONVERSATION


def _default_message_limit_service() -> int:
    return settings.PROXY_DEFAULT_MESSAGE_LIMIT_SERVICE


def _spoken(default: str) -> models.CharField:
    """A text callers hear, with a database default: processes of an older release insert without it."""
    return models.CharField(max_length=1500, default=default, db_default=default)


NOT_ALLOWED_TEXT = "Sorry, this call cannot be connected. Goodbye."


class Service(models.Model):
    """One marketplace app: a tenant with its own pool, keys and texts."""

    class RecordingPolicy(models.TextChoices):
        NEVER = "never", "Never record"
        PER_CONVERSATION = "per_conversation", "When the conversation asks"
        ALWAYS = "always", "Always record"

    class PinMode(models.TextChoices):
        OFF = "off", "Off: the caller's number routes"
        FALLBACK = "fallback", "Fallback: the caller's number routes, else a PIN"
        ALWAYS = "always", "Always: every caller enters a PIN"

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
    # Said to both people before a recorded call is bridged: to the caller ahead of the
    # connect, to the callee through the phone endpoint's onAnswer NCCO. The column keeps
    # its old name: web processes of the previous release read it until they restart.
    record_notice = models.CharField(
        max_length=1500, default="This call is recorded.", db_column="recording_notice_text"
    )
    # db_default: processes still running the code before these fields insert without them.
    record_notice_language = models.CharField(
        max_length=10,
        blank=True,
        default="",
        db_default="",
        help_text="BCP-47 language of the notice; blank: the service's.",
    )
    record_notice_voice_style = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Vonage voice style of the notice; blank: the service's."
    )
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
        help_text="Placeholders: {service}, {name}, {counterpart}, {proxy_number}, {pin} (with PINs on, a "
        "sentence naming the PIN is added when the template has no {pin}).",
    )
    # Defaults of conversations' ring_timeout and call_time_limit.
    connect_timeout = models.PositiveSmallIntegerField(
        default=45,
        validators=[MinValueValidator(MIN_RING_TIMEOUT), MaxValueValidator(MAX_RING_TIMEOUT)],
        help_text="Seconds the other party's phone rings.",
    )
    call_time_limit = models.PositiveIntegerField(
        default=MAX_CALL_TIME_LIMIT,
        validators=[MinValueValidator(MIN_CALL_TIME_LIMIT), MaxValueValidator(MAX_CALL_TIME_LIMIT)],
        help_text="Maximum call length in seconds.",
    )
    recording_policy = models.CharField(
        max_length=20, choices=RecordingPolicy.choices, default=RecordingPolicy.PER_CONVERSATION
    )
    transcribe = models.BooleanField(
        default=False, db_default=False, help_text="Ask Vonage for a transcript of every recording."
    )
    retention_days = models.PositiveIntegerField(
        default=_default_retention,
        db_default=90,  # the job never keeps more than RETENTION_MAX_DAYS, whatever is stored
        validators=[validate_retention_days],
        help_text="Days after a conversation ends until its recordings, transcripts, message texts, "
        "names and real numbers are deleted or redacted.",
    )

    # PINs (proxy.pins). db_default: processes still running the code before these fields insert without them.
    pin_mode = models.CharField(
        max_length=10,
        choices=PinMode.choices,
        default=PinMode.OFF,
        db_default=PinMode.OFF,
        help_text="Applies to conversations opened from now on; open ones keep the routing they were opened with.",
    )
    pin_prompt_text = _spoken("Please enter your six-digit PIN on your keypad.")
    pin_invalid_text = _spoken("Sorry, that PIN is not valid.")
    pin_no_input_text = _spoken("We did not receive a PIN.")
    pin_goodbye_text = _spoken("Sorry, we could not verify your PIN. Goodbye.")

    # Marketplace callbacks.
    callback_url = models.URLField(blank=True, default="")
    callback_secret = models.CharField(max_length=200, blank=True, default="")
    # The database defaults let processes still running the code before these fields
    # insert services during a deploy.
    callback_includes_text = models.BooleanField(
        default=False, db_default=False, help_text="Message callbacks carry the text itself (ids only otherwise)."
    )

    # Masked messages.
    auto_reply_text = models.CharField(
        max_length=1000,
        blank=True,
        default="",
        db_default="",
        help_text="Texted back, at most once a day per sender, to someone who texts a proxy number "
        "outside any open conversation (optional).",
    )
    message_limit_conversation = models.PositiveIntegerField(
        default=_default_message_limit_conversation,
        db_default=100,
        help_text="Texts relayed per conversation in any hour; more are held, not relayed. 0 = no cap.",
    )
    message_limit_service = models.PositiveIntegerField(
        default=_default_message_limit_service,
        db_default=6000,
        help_text="Texts relayed per minute across the service; more are held, not relayed. 0 = no cap.",
    )

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
    # Set by the retention job once the conversation's personal data is gone (proxy.retention).
    redacted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["service", "-created_at"], name="conv_service_created"),
            # The console lists every service's conversations newest first.
            models.Index(fields=["-created_at"], name="conv_created"),
            models.Index(fields=["service", "external_id"], name="conv_service_external"),
            models.Index(fields=["expires_at"], condition=Q(status="open"), name="conv_open_expiry"),
            # The retention job's walk: ended and not yet redacted, oldest end first.
            models.Index(
                fields=["service", "ended_at"],
                condition=Q(redacted_at__isnull=True, ended_at__isnull=False),
                name="conv_retention_due",
            ),
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
    "the conversation is open" so that the routing invariants can be partial unique
    indexes on this table alone:

    - among open participants that route by their number (``routes_by_pair``),
      (real_number, proxy_number) is unique: the caller ID finds the conversation;
    - among open participants with a ``pin``, (proxy_number, pin) is unique: the PIN
      finds it. A service in PIN mode ``always`` opens participants with
      ``routes_by_pair`` off, so one person may hold one number in any number of
      conversations; the PIN alone tells them apart.
    """

    class Validation(models.TextChoices):
        PENDING = "pending", "Pending"
        VALID = "valid", "Valid"
        INVALID = "invalid", "Invalid"
        UNKNOWN = "unknown", "Could not be checked"

    # The id the API and callbacks show: random, so it tells a tenant nothing about volume.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
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
    # Six digits from proxy.pins, or None when the service's PIN mode was off. A secret:
    # never logged, masked in the console.
    pin = models.CharField(max_length=6, null=True, blank=True)
    # db_default: processes still running the code before this field insert without it.
    routes_by_pair = models.BooleanField(
        default=True, db_default=True, help_text="A call from the real number to the proxy number reaches the other."
    )
    cooldown_until = models.DateTimeField(null=True, blank=True)
    validation = models.CharField(max_length=10, choices=Validation.choices, default=Validation.PENDING)
    # When the number check is next due while pending (proxy.outbox): unset until first tried.
    validation_due_at = models.DateTimeField(null=True, blank=True)
    number_type = models.CharField(max_length=30, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    objects = ParticipantQuerySet.as_manager()

    class Meta:
        ordering = ["conversation_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["real_number", "proxy_number"],
                condition=Q(active=True, routes_by_pair=True),
                name="participant_unique_open_pair_routed",
            ),
            models.UniqueConstraint(
                fields=["proxy_number", "pin"],
                condition=Q(active=True, pin__isnull=False),
                name="participant_unique_open_pin",
            ),
            # Whoever the caller ID does not route must have a PIN: nobody is unreachable.
            models.CheckConstraint(
                condition=Q(routes_by_pair=True) | Q(pin__isnull=False), name="participant_routed_by_pair_or_pin"
            ),
        ]
        indexes = [
            # Cooldown look-ups and stickiness: the latest pairs of a real number.
            models.Index(fields=["real_number", "proxy_number", "-created_at"], name="participant_pair_recent"),
            models.Index(fields=["service", "real_number"], name="participant_service_real"),
            # The redrive's look-up of numbers still to check (a few rows, not the table).
            models.Index(
                fields=["validation_due_at", "created_at"],
                condition=Q(validation="pending"),
                name="participant_validation_due",
            ),
            # Is the caller's pair cooling down? A range on cooldown_until, past nobody else's
            # rows: not a PIN-only person's many rows on one number, not a pair's long history.
            models.Index(
                fields=["real_number", "proxy_number", "cooldown_until"],
                condition=Q(routes_by_pair=True, active=False),
                name="participant_pair_cooling",
            ),
            # PINs still cooling on a number are not handed out again (proxy.pins).
            models.Index(fields=["proxy_number", "pin"], condition=Q(pin__isnull=False), name="participant_pin_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.name or 'participant'} via {self.proxy_number_id}"


class Call(models.Model):
    """One Vonage call leg, kept current from its events."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class RoutedBy(models.TextChoices):
        NONE = "", "Not routed"
        PAIR = "pair", "Caller's number"
        PIN = "pin", "PIN"

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
    # How the call found its conversation. db_default: older processes insert without it.
    routed_by = models.CharField(max_length=4, choices=RoutedBy.choices, blank=True, default="", db_default="")
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
        indexes = [
            models.Index(fields=["conversation", "-created_at"], name="call_conversation_created"),
            # The console lists every call newest first.
            models.Index(fields=["-created_at"], name="call_created"),
        ]

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


def copied_file_path(instance: CopiedFile, filename: str) -> str:
    return f"{instance.FOLDER}/{timezone.now():%Y/%m}/{filename}"


class CopiedFile(models.Model):
    """A file Vonage keeps for us (a recording, a transcript), copied into our storage by a worker.

    An outbox row: ``pending`` until a worker has copied it (``downloaded``) or given up
    (``failed``, with ``last_error`` for staff); ``deleted`` once retention removed the file.
    ``next_attempt_at`` is when the row is next due: a retry's backoff, or the lease of the
    attempt running now (a dead worker's row is taken up again once it passes).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending download"
        DOWNLOADED = "downloaded", "Downloaded"
        FAILED = "failed", "Failed"
        DELETED = "deleted", "Deleted (retention)"

    FOLDER = "files"

    recording_uuid = models.CharField(max_length=64, unique=True)
    call = models.ForeignKey(Call, on_delete=models.SET_NULL, null=True, blank=True, related_name="%(class)ss")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="%(class)ss"
    )
    conversation_uuid = models.CharField(max_length=64, blank=True, default="")
    size = models.PositiveIntegerField(null=True, blank=True)
    file = models.FileField(upload_to=copied_file_path, blank=True, max_length=255)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the row is next due.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.recording_uuid


class Recording(CopiedFile):
    """A call recording announced by a record event, copied from Vonage into storage."""

    FOLDER = "recordings"

    recording_url = models.URLField(max_length=500)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("play_recording", "Can play recordings and read transcripts")]


class Transcript(CopiedFile):
    """Vonage's transcript of a recording (``recording_uuid``), announced by the transcription webhook."""

    FOLDER = "transcripts"

    transcription_url = models.URLField(max_length=500)


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
    # When the row is next due while queued (proxy.outbox): unset until first tried, then a
    # worker's lease or the retry's time.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set from the claim until the send's outcome is written: found set later, the worker
    # died mid-send and whether the provider took it is unknown (proxy.delivery.sms).
    sending_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="notification_status"),
            models.Index(
                fields=["next_attempt_at", "created_at"], condition=Q(status="queued"), name="notification_due"
            ),
        ]

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


class PinCall(models.Model):
    """A call that was asked for a PIN, from its first input on: the tries and how it ended.

    Written by the input webhook only (never on the answer path). The brute-force
    guard reads it: a row whose failure made three failed calls in a row, from one
    caller on one number within ten minutes, carries ``locked_until``.
    """

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending (no PIN entered yet)"
        FAILED = "failed", "Failed (a wrong PIN, or no tries left)"
        CONNECTED = "connected", "Connected"
        ENDED = "ended", "A PIN of an ended conversation"

    call_uuid = models.CharField(max_length=64, unique=True)
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    proxy_number = models.CharField(max_length=15, help_text="The number dialled.")
    # The caller's real number (personal data: masked in the console), "" when withheld.
    caller = models.CharField(max_length=15, blank=True, default="")
    tries = models.PositiveSmallIntegerField(default=0, help_text="Inputs received.")
    wrong_pins = models.PositiveSmallIntegerField(default=0, help_text="Inputs that were not an open PIN.")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    participant = models.ForeignKey(
        Participant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="The PIN's owner."
    )
    failed_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "PIN call"
        indexes = [
            models.Index(fields=["proxy_number", "caller", "-created_at"], name="pincall_number_caller"),
            # The lockout check at every PIN prompt reads only the rows that started a lockout.
            models.Index(
                fields=["proxy_number", "caller", "locked_until"],
                condition=Q(locked_until__isnull=False),
                name="pincall_lockout",
            ),
        ]

    def __str__(self) -> str:
        return f"PIN call {self.call_uuid[:8]} ({self.outcome})"


# The message tables live in their own module (string references only, so it imports
# nothing of this one); importing them here registers them with the app.
from proxy.message_models import Message, MessageContact, MessageCounter, MessagePart  # noqa: E402, F401
