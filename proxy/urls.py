from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from proxy.api import views

app_name = "api"


@csrf_exempt
def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    # A JSON 404 for any other path under /api/v1/, which also keeps APPEND_SLASH from
    # redirecting ("conversations/" is not an alias of "conversations").
    return JsonResponse({"detail": "Not found."}, status=404)


urlpatterns = [
    path("conversations", views.ConversationListCreateApi.as_view(), name="conversation-list"),
    path("conversations/<str:conversation_id>", views.ConversationDetailApi.as_view(), name="conversation-detail"),
    path("conversations/<str:conversation_id>/calls", views.ConversationCallsApi.as_view(), name="conversation-calls"),
    path(
        "conversations/<str:conversation_id>/messages",
        views.ConversationMessagesApi.as_view(),
        name="conversation-messages",
    ),
    path("recordings/<str:recording_uuid>", views.RecordingFileApi.as_view(), name="recording-file"),
    path(
        "recordings/<str:recording_uuid>/transcript",
        views.RecordingTranscriptApi.as_view(),
        name="recording-transcript",
    ),
    path("service", views.ServiceApi.as_view(), name="service"),
    path("service/callback-secret", views.CallbackSecretApi.as_view(), name="service-callback-secret"),
    re_path(r"^(?P<rest>.*)$", not_found),
]
