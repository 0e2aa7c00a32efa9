"""REST API v1 views: authenticate, validate, call a service or selector, serialise."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from proxy import messaging, selectors, services
from proxy.api import schema
from proxy.api.filters import ConversationFilter
from proxy.api.serializers import (
    CallbackSecretSerializer,
    CallOutputSerializer,
    ConversationCreateInputSerializer,
    ConversationOutputSerializer,
    ConversationUpdateInputSerializer,
    MessageCreateInputSerializer,
    MessageOutputSerializer,
    ServiceSerializer,
)
from proxy.idempotency import (
    Claim,
    idempotency_claim,
    idempotency_complete,
    idempotency_key_parse,
    idempotency_release,
    request_fingerprint,
)
from proxy.models import Conversation, Service
from proxy.pagination import Pagination
from proxy.service_settings import callback_secret_rotate, service_update


def _page_of(serializer: type[serializers.Serializer], name: str) -> serializers.Serializer:
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer(many=True),
        },
    )


def _service(request: Request) -> Service:
    # ServiceKeyAuthentication puts the service in request.auth; IsService guarantees it.
    service = request.auth
    assert isinstance(service, Service)
    return service


def _conversation_or_404(service: Service, conversation_id: str, *, shown: bool = True) -> Conversation:
    """The service's conversation, with what its output needs when ``shown``, else the row alone."""
    # The path takes any string so that a malformed id is a JSON 404 like a foreign one.
    try:
        pk = uuid.UUID(conversation_id)
    except ValueError:
        raise NotFound("No such conversation.") from None
    rows = (selectors.conversations_shown if shown else selectors.conversations_for_service)(service=service)
    conversation = rows.filter(pk=pk).first()
    if conversation is None:
        raise NotFound("No such conversation.")
    return conversation


def _output(conversation: Conversation, request: Request) -> dict[str, Any]:
    return ConversationOutputSerializer(conversation, context={"request": request, "service": _service(request)}).data


class ConversationListCreateApi(APIView):
    @extend_schema(
        operation_id="conversations_list",
        summary="List conversations",
        parameters=[
            OpenApiParameter(
                "status",
                str,
                enum=[c.value for c in Conversation.Status],
                description="Effective status: an open conversation past expires_at counts as expired.",
            ),
            OpenApiParameter("external_id", str, description="Exact match."),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int, description=f"At most {Pagination.max_page_size}."),
        ],
        responses={
            200: _page_of(ConversationOutputSerializer, "ConversationPage"),
            400: schema.BAD_REQUEST,
            401: schema.UNAUTHORIZED,
            429: schema.THROTTLED,
        },
    )
    def get(self, request: Request) -> Response:
        filterset = ConversationFilter(
            request.query_params, queryset=selectors.conversations_shown(service=_service(request)), request=request
        )
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        queryset = filterset.qs.order_by("-created_at", "-id")
        paginator = Pagination()
        page: list[Conversation] | None = paginator.paginate_queryset(queryset, request, view=self)
        context = {"request": request, "service": _service(request)}
        data = ConversationOutputSerializer(page, many=True, context=context).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        operation_id="conversations_create",
        summary="Open a conversation",
        description="Allocates a proxy number to each participant and, unless `notify` is false, texts each "
        "participant the number to call.",
        parameters=[schema.IDEMPOTENCY_KEY],
        request=ConversationCreateInputSerializer,
        responses={
            201: ConversationOutputSerializer,
            400: schema.BAD_REQUEST,
            401: schema.UNAUTHORIZED,
            409: schema.POOL_EXHAUSTED_OR_IN_PROGRESS,
            413: schema.TOO_LARGE,
            422: schema.KEY_REUSED,
            429: schema.THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        service = _service(request)
        raw_key = request.headers.get("Idempotency-Key")
        if raw_key is None:
            return self._create(request, service)
        key = idempotency_key_parse(raw_key)
        claim = idempotency_claim(service=service, key=key, fingerprint=request_fingerprint(request.data))
        if claim.replay:
            return Response(
                claim.record.response_body,
                status=claim.record.response_status,
                headers={"Idempotent-Replayed": "true", **self._location(claim.record.response_body)},
            )
        try:
            return self._create(request, service, claim=claim)
        except BaseException:
            idempotency_release(claim=claim)
            raise

    def _create(self, request: Request, service: Service, claim: Claim | None = None) -> Response:
        serializer = ConversationCreateInputSerializer(data=request.data, context={"service": service})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        answer: dict[str, Any] = {}

        def respond(conversation: Conversation) -> None:
            # Inside the creating transaction, from the rows in hand: a retry with the same
            # key finds this very answer once the conversation exists.
            answer["body"] = _output(conversation, request)
            if claim is not None:
                idempotency_complete(
                    claim=claim, status=status.HTTP_201_CREATED, body=answer["body"], conversation_id=conversation.pk
                )

        services.conversation_open(
            service=service,
            # Validated and normalised by the serializer: not parsed a second time.
            people=data["participants"],
            ttl=data.get("ttl"),
            external_id=data.get("external_id") or "",
            record=data["record"],
            notify=data["notify"],
            metadata=data.get("metadata") or {},
            call_time_limit=data.get("call_time_limit"),
            ring_timeout=data.get("ring_timeout"),
            on_created=respond,
        )
        body = answer["body"]
        return Response(body, status=status.HTTP_201_CREATED, headers=self._location(body))

    @staticmethod
    def _location(body: Any) -> dict[str, str]:
        if isinstance(body, dict) and body.get("id"):
            return {"Location": reverse("api:conversation-detail", kwargs={"conversation_id": body["id"]})}
        return {}


class ConversationScopedApi(APIView):
    """Another service's conversation is a 404 whatever the method, OPTIONS and unsupported ones included."""

    def http_method_not_allowed(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        _conversation_or_404(_service(request), kwargs["conversation_id"], shown=False)
        return super().http_method_not_allowed(request, *args, **kwargs)

    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        _conversation_or_404(_service(request), kwargs["conversation_id"], shown=False)
        return super().options(request, *args, **kwargs)


class ConversationDetailApi(ConversationScopedApi):
    @extend_schema(
        operation_id="conversations_retrieve",
        summary="Get a conversation",
        responses={
            200: ConversationOutputSerializer,
            401: schema.UNAUTHORIZED,
            404: schema.NOT_FOUND,
            429: schema.THROTTLED,
        },
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        return Response(_output(_conversation_or_404(_service(request), conversation_id), request))

    @extend_schema(
        operation_id="conversations_update",
        summary="Extend, annotate or close a conversation",
        description="`ttl` sets expires_at that many seconds from now; `metadata` replaces the metadata; "
        '`status: "closed"` closes it. An ended conversation is final (409 `conversation_ended`).',
        request=ConversationUpdateInputSerializer,
        responses={
            200: ConversationOutputSerializer,
            400: schema.BAD_REQUEST,
            401: schema.UNAUTHORIZED,
            404: schema.NOT_FOUND,
            409: schema.ENDED,
            413: schema.TOO_LARGE,
            429: schema.THROTTLED,
        },
    )
    def patch(self, request: Request, conversation_id: str) -> Response:
        conversation = _conversation_or_404(_service(request), conversation_id, shown=False)
        serializer = ConversationUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        services.conversation_update(
            conversation=conversation,
            ttl=data.get("ttl"),
            metadata=data.get("metadata"),
            close=data.get("status") == Conversation.Status.CLOSED,
        )
        return Response(_output(_conversation_or_404(_service(request), conversation_id), request))

    @extend_schema(
        operation_id="conversations_close",
        summary="Close a conversation",
        description="Idempotent: an ended conversation stays as it is.",
        responses={
            204: OpenApiResponse(description="Closed (or had already ended)."),
            401: schema.UNAUTHORIZED,
            404: schema.NOT_FOUND,
            429: schema.THROTTLED,
        },
    )
    def delete(self, request: Request, conversation_id: str) -> Response:
        conversation = _conversation_or_404(_service(request), conversation_id, shown=False)
        services.conversation_close(conversation=conversation)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConversationCallsApi(ConversationScopedApi):
    @extend_schema(
        operation_id="conversations_calls_list",
        summary="List a conversation's calls, newest first",
        parameters=[OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses={
            200: _page_of(CallOutputSerializer, "CallPage"),
            401: schema.UNAUTHORIZED,
            404: schema.NOT_FOUND,
            429: schema.THROTTLED,
        },
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = _conversation_or_404(_service(request), conversation_id, shown=False)
        calls = selectors.calls_shown(conversation=conversation)
        paginator = Pagination()
        page = paginator.paginate_queryset(calls, request, view=self)
        data = CallOutputSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)


class ConversationMessagesApi(ConversationScopedApi):
    @extend_schema(
        operation_id="conversations_messages_list",
        summary="List a conversation's texts, newest first",
        description="Texts the participants sent each other through their proxy numbers, and the service's own.",
        parameters=[OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses={
            200: _page_of(MessageOutputSerializer, "MessagePage"),
            401: schema.UNAUTHORIZED,
            404: schema.NOT_FOUND,
            429: schema.THROTTLED,
        },
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = _conversation_or_404(_service(request), conversation_id, shown=False)
        paginator = Pagination()
        page = paginator.paginate_queryset(
            selectors.messages_for_conversation(conversation=conversation), request, view=self
        )
        return paginator.get_paginated_response(MessageOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="conversations_messages_create",
        summary="Text a participant",
        description="Sends the service's own text to one participant, from that participant's proxy number "
        "(202: it is queued; follow its status in the list or through `message.status` callbacks). "
        "A participant who texted STOP gets nothing: the message comes back `failed`.",
        request=MessageCreateInputSerializer,
        responses={
            202: MessageOutputSerializer,
            400: schema.BAD_REQUEST,
            401: schema.UNAUTHORIZED,
            404: schema.NOT_FOUND,
            409: schema.ENDED,
            413: schema.TOO_LARGE,
            429: schema.THROTTLED,
        },
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        conversation = _conversation_or_404(_service(request), conversation_id, shown=False)
        serializer = MessageCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = messaging.message_send_for_service(
            conversation=conversation,
            to_participant=serializer.validated_data["to_participant"],
            text=serializer.validated_data["text"],
        )
        return Response(MessageOutputSerializer(message).data, status=status.HTTP_202_ACCEPTED)


def _file_response(file: FieldFile, *, content_type: str, filename: str) -> HttpResponseBase:
    """A stored recording or transcript: a redirect to a short-lived signed URL of the bucket
    (``STORAGE_SERVE=redirect``), else the file streamed. Never cached by anyone on the way."""
    if settings.STORAGE_SERVE == "redirect":
        response: HttpResponseBase = HttpResponseRedirect(file.storage.url(file.name))
    else:
        response = FileResponse(file.open("rb"), content_type=content_type, filename=filename)
    response["Cache-Control"] = "private, no-store"
    return response


def _valid_uuid_text(recording_uuid: str) -> bool:
    return len(recording_uuid) <= 64 and "\x00" not in recording_uuid


class _CopiedFileApi(APIView):
    """A copied recording or transcript of one of the calling service's calls (never a public URL)."""

    kind = ""
    content_type = ""
    extension = ""

    def find(self, service: Service, recording_uuid: str) -> Any:
        raise NotImplementedError

    def serve(self, request: Request, recording_uuid: str) -> HttpResponseBase:
        service = _service(request)
        copied = self.find(service, recording_uuid) if _valid_uuid_text(recording_uuid) else None
        if copied is None:
            raise NotFound(f"No such {self.kind}.")
        return _file_response(
            copied.file, content_type=self.content_type, filename=f"{copied.recording_uuid}.{self.extension}"
        )


class RecordingFileApi(_CopiedFileApi):
    """A copied call recording, to the service whose conversation it is."""

    kind, content_type, extension = "recording", "audio/mpeg", "mp3"

    def find(self, service: Service, recording_uuid: str) -> Any:
        return selectors.recording_for_service(service=service, recording_uuid=recording_uuid)

    @extend_schema(
        operation_id="recordings_download",
        summary="Download a call recording",
        description="The URL a call's `recording_url` gives once the recording is copied: the MP3, or a "
        "redirect to a signed URL of the storage bucket that expires within minutes.",
        responses={
            (200, "audio/mpeg"): OpenApiTypes.BINARY,
            302: OpenApiResponse(description="Redirect to a short-lived signed URL of the file."),
            401: schema.UNAUTHORIZED,
            404: schema.NOT_FOUND,
            429: schema.THROTTLED,
        },
    )
    def get(self, request: Request, recording_uuid: str) -> HttpResponseBase:
        return self.serve(request, recording_uuid)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # A client asking for audio/mpeg must not get 406: errors still go out as JSON.
        return super().perform_content_negotiation(request, force=True)


class RecordingTranscriptApi(_CopiedFileApi):
    """A copied transcript of a call recording, to the service whose conversation it is."""

    kind, content_type, extension = "transcript", "application/json", "json"

    def find(self, service: Service, recording_uuid: str) -> Any:
        return selectors.transcript_for_service(service=service, recording_uuid=recording_uuid)

    @extend_schema(
        operation_id="recordings_transcript",
        summary="Download the transcript of a call recording",
        description="The URL a call's `transcript_url` gives: Vonage's transcript JSON as Vonage wrote it, "
        "or a redirect to a signed URL of the storage bucket that expires within minutes.",
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            302: OpenApiResponse(description="Redirect to a short-lived signed URL of the file."),
            401: schema.UNAUTHORIZED,
            404: schema.NOT_FOUND,
            429: schema.THROTTLED,
        },
    )
    def get(self, request: Request, recording_uuid: str) -> HttpResponseBase:
        return self.serve(request, recording_uuid)


class ServiceApi(APIView):
    """The calling key's own service: its settings, callback and hook URLs."""

    @extend_schema(
        operation_id="service_retrieve",
        summary="Get your service's settings",
        responses={200: ServiceSerializer, 401: schema.UNAUTHORIZED, 429: schema.THROTTLED},
    )
    def get(self, request: Request) -> Response:
        return Response(ServiceSerializer(_service(request)).data)

    @extend_schema(
        operation_id="service_update",
        summary="Change your service's settings",
        description="Only the fields given change. Callback and hook URLs must be https and reach a public "
        'address; `""` removes one. Unknown fields are refused (400), `slug` is read-only.',
        request=ServiceSerializer,
        responses={
            200: ServiceSerializer,
            400: schema.BAD_REQUEST,
            401: schema.UNAUTHORIZED,
            413: schema.TOO_LARGE,
            429: schema.THROTTLED,
        },
    )
    def patch(self, request: Request) -> Response:
        service = _service(request)
        serializer = ServiceSerializer(service, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        service = service_update(service=service, changes=serializer.validated_data)
        return Response(ServiceSerializer(service).data)


class CallbackSecretApi(APIView):
    @extend_schema(
        operation_id="service_callback_secret_rotate",
        summary="Make a new callback signing secret",
        description="Returns the new secret once. For 24 hours callbacks and hooks carry two signatures in "
        "`X-Signature`, comma-separated: the new secret's, then the previous one's.",
        request=None,
        responses={201: CallbackSecretSerializer, 401: schema.UNAUTHORIZED, 429: schema.THROTTLED},
    )
    def post(self, request: Request) -> Response:
        secret = callback_secret_rotate(service=_service(request))
        response = Response({"secret": secret}, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response
