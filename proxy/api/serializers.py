"""Input and output shapes of REST API v1 (plain serializers: the API is not the table)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from proxy import participants, phone
from proxy.messaging import MAX_TEXT
from proxy.models import Call, Conversation, Message, Notification, Participant
from proxy.parsers import json_strings
from proxy.recordings import newest_copied, recording_api_path, transcript_api_path

MAX_EXTERNAL_ID = 200
MAX_METADATA_BYTES = 8 * 1024
MIN_TTL = 1
MAX_TTL = 365 * 24 * 3600


# --- Input ----------------------------------------------------------------------------------------


class CountryField(serializers.CharField):
    """ISO 3166-1 alpha-2, any case in, upper case out; only regions phonenumbers knows."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 2)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        try:
            return participants.country_hint(super().to_internal_value(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class MetadataField(serializers.JSONField):
    """A JSON object of at most 8 KiB serialised, storable as-is in PostgreSQL jsonb."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Give a JSON object.")
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        if len(encoded) > MAX_METADATA_BYTES:
            raise serializers.ValidationError(f"At most {MAX_METADATA_BYTES} bytes of JSON ({len(encoded)} given).")
        # jsonb cannot store U+0000; refuse it here rather than fail in the database.
        if any("\x00" in item for item in json_strings(value)):
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


class TtlField(serializers.IntegerField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", MIN_TTL)
        kwargs.setdefault("max_value", MAX_TTL)
        kwargs.setdefault("help_text", f"Seconds from now until the conversation expires ({MIN_TTL} to {MAX_TTL}).")
        super().__init__(**kwargs)


class ParticipantInputSerializer(serializers.Serializer):
    number = serializers.CharField(
        max_length=64,
        help_text='E.164 ("+12015550101"), international digits, or national with `country`.',
    )
    name = serializers.CharField(max_length=participants.MAX_NAME, required=False, allow_blank=True, allow_null=True)
    country = CountryField(
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="ISO 3166-1 alpha-2 hint for reading a national number (default: the service's country).",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Parse the number even when another field is bad, so one 400 names every bad field.
        try:
            attrs = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = dict(exc.detail) if isinstance(exc.detail, dict) else {}
            if errors and "number" not in errors and isinstance(data, dict):
                hint = None if "country" in errors else data.get("country")
                number_error = self._number_error(data.get("number"), hint)
                if number_error:
                    errors["number"] = [serializers.ErrorDetail(number_error, code="invalid")]
            raise serializers.ValidationError(errors or exc.detail) from exc
        return attrs

    def _normalize(self, number: str, country: str | None) -> str:
        service = self.context["service"]
        return participants.number_normalize(number, country=country, default_country=service.default_country)

    def _number_error(self, number: Any, country: Any) -> str | None:
        try:
            self._normalize(str(number), str(country) if isinstance(country, str) else None)
        except phone.InvalidNumber as exc:
            return str(exc)
        return None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            digits = self._normalize(attrs["number"], attrs.get("country"))
        except phone.InvalidNumber as exc:
            raise serializers.ValidationError({"number": [str(exc)]}) from exc
        return dict(participants.person_build(digits=digits, name=attrs.get("name"), country=attrs.get("country")))


class ParticipantPairSerializer(serializers.ListSerializer):
    """Exactly two participants; errors come back as a list, one object per participant."""

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, list):
            raise serializers.ValidationError(
                f'Expected a list of two participants but got type "{type(data).__name__}".'
            )
        if len(data) != 2:
            raise serializers.ValidationError(participants.pair_size_error(len(data)))
        assert self.child is not None
        results: list[dict[str, Any]] = []
        errors: list[Any] = []
        for item in data:
            try:
                results.append(self.child.run_validation(item))
                errors.append({})
            except serializers.ValidationError as exc:
                errors.append(exc.detail)
        if any(errors):
            raise serializers.ValidationError(errors)
        return results


class ConversationCreateInputSerializer(serializers.Serializer):
    participants = ParticipantPairSerializer(child=ParticipantInputSerializer())
    ttl = TtlField(required=False, allow_null=True)
    external_id = serializers.CharField(
        max_length=MAX_EXTERNAL_ID,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="Your own id for this conversation (an order id, say).",
    )
    record = serializers.BooleanField(required=False, default=False)
    notify = serializers.BooleanField(
        required=False, default=True, help_text="Text each participant the number to call (SMS)."
    )
    metadata = MetadataField(required=False, allow_null=True, help_text="Any JSON object, at most 8 KiB.")

    def validate_participants(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if value[0]["number"] == value[1]["number"]:
            raise serializers.ValidationError([{}, {"number": [participants.SAME_NUMBER_ERROR]}])
        return value


class ConversationUpdateInputSerializer(serializers.Serializer):
    ttl = TtlField(required=False, help_text="Expire this many seconds from now.")
    metadata = MetadataField(required=False, help_text="Replaces the metadata; any JSON object, at most 8 KiB.")
    status = serializers.ChoiceField(choices=["closed"], required=False, help_text='"closed" closes it.')


class MessageCreateInputSerializer(serializers.Serializer):
    to_participant = serializers.UUIDField(
        help_text="Id of the participant to text (one of the conversation's `participants`)."
    )
    text = serializers.CharField(
        max_length=MAX_TEXT,
        trim_whitespace=False,
        help_text=f"What to send, 1 to {MAX_TEXT} characters (any alphabet: unicode is sent as unicode).",
    )


# --- Output ---------------------------------------------------------------------------------------


class NotificationOutputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Notification.Status.choices)
    updated_at = serializers.DateTimeField()
    error = serializers.CharField(source="last_error", allow_null=True)

    def to_representation(self, instance: Notification) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["error"] = data["error"] or None
        return data


class ParticipantOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id", help_text="Opaque: it tells nothing about order or volume.")
    number = serializers.CharField(source="real_number", help_text="Real number, E.164 digits without +.")
    name = serializers.CharField()
    country = serializers.CharField()
    proxy_number = serializers.CharField(
        source="proxy_number_id", help_text="The pool number this person dials; also the caller ID they see."
    )
    pin = serializers.CharField(
        allow_null=True,
        help_text="Six digits this person keys in when the proxy number asks for a PIN (the service's "
        "pin_mode fallback or always); null when PINs are off. Unique among the open conversations on "
        "proxy_number.",
    )
    notification = serializers.SerializerMethodField()

    @staticmethod
    def latest_notification(participant: Participant) -> Notification | None:
        # Uses the prefetch ordered newest first when there is one.
        return next(iter(participant.notifications.all()), None)

    @extend_schema_field(NotificationOutputSerializer(allow_null=True))
    def get_notification(self, participant: Participant) -> dict[str, Any] | None:
        latest = self.latest_notification(participant)
        return None if latest is None else NotificationOutputSerializer(latest).data


class ConversationOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(
        choices=Conversation.Status.choices, source="effective_status", help_text="Past expires_at: expired."
    )
    external_id = serializers.CharField()
    expires_at = serializers.DateTimeField()
    record = serializers.BooleanField()
    metadata = serializers.JSONField()
    created_at = serializers.DateTimeField()
    participants = ParticipantOutputSerializer(many=True)
    closed_reason = serializers.CharField()


class CallOutputSerializer(serializers.Serializer):
    uuid = serializers.CharField()
    conversation_uuid = serializers.CharField()
    status = serializers.CharField()
    direction = serializers.CharField()
    from_participant = serializers.UUIDField(source="from_participant.public_id", allow_null=True, default=None)
    to_participant = serializers.UUIDField(source="to_participant.public_id", allow_null=True, default=None)
    started_at = serializers.DateTimeField(allow_null=True)
    answered_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    duration = serializers.IntegerField(allow_null=True, help_text="Whole seconds.")
    price = serializers.DecimalField(
        max_digits=14, decimal_places=8, allow_null=True, help_text="EUR, as a decimal string."
    )
    recording_url = serializers.SerializerMethodField()
    transcript_url = serializers.SerializerMethodField()

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else settings.PUBLIC_URL + path

    @extend_schema_field(
        serializers.URLField(
            allow_null=True,
            help_text="The call's recording, once copied into the product's storage (an API URL that needs "
            "the service's key), else null.",
        )
    )
    def get_recording_url(self, call: Call) -> str | None:
        recording = newest_copied(call.recordings.all())
        return None if recording is None else self._absolute(recording_api_path(recording.recording_uuid))

    @extend_schema_field(
        serializers.URLField(
            allow_null=True,
            help_text="The transcript of the call's recording (Vonage's JSON), once copied, when the service "
            "transcribes; an API URL that needs the service's key; else null.",
        )
    )
    def get_transcript_url(self, call: Call) -> str | None:
        transcript = newest_copied(call.transcripts.all())
        return None if transcript is None else self._absolute(transcript_api_path(transcript.recording_uuid))


class MessageOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    from_participant = serializers.UUIDField(
        source="from_participant.public_id",
        allow_null=True,
        default=None,
        help_text="The participant who wrote it; null for the service.",
    )
    to_participant = serializers.UUIDField(
        source="to_participant.public_id", allow_null=True, default=None, help_text="The participant it is for."
    )
    status = serializers.ChoiceField(
        choices=[Message.Status.QUEUED, Message.Status.SENT, Message.Status.DELIVERED, Message.Status.FAILED],
        source="api_status",
        help_text="failed: not sent (refused by the network, the recipient opted out, or held over a cap).",
    )
    text = serializers.CharField(help_text="Empty once the retention period has removed it.")
    created_at = serializers.DateTimeField()


class ErrorSerializer(serializers.Serializer):
    """Errors clients branch on carry a stable code."""

    code = serializers.CharField()
    detail = serializers.CharField()


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()
