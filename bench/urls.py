"""The product's URLs, plus the baselines, ceilings and floors that benchmark 1 compares the answer with.

- ``/bench/bare``: a plain Django view returning a constant JSON list (an NCCO-sized
  one), through the same middleware and server as the answer webhook: the ratio of
  the two throughputs is the cost of the product's own work.
- ``/bench/one-read``: the bare view plus one indexed read of the caller's participant
  row (the partial unique index on open (real_number, proxy_number)), read the way the
  answer reads (the PostgreSQL backend's ``fetch_row``): the floor of any answer path that
  reads the database once.
- ``/bench/route-read``: the bare view plus the answer webhook's own route read
  (``proxy.selectors.route_for_call``, no signature): the floor of the product's read.
- ``/bench/route-table-read``: the bare view plus the read of a prototype route table
  (``bench.reads``; the table exists while benchmark 1 runs): the floor the answer's read
  would have with a route table kept by the services.
- ``/bench/signed``: the bare view behind the answer webhook's own signature check
  (HS256 JWT): the ceiling of any answer that verifies Vonage's signature, as every
  webhook here must, before it reads anything.
- ``/bench/webhook/minimum``: the least any answer webhook can do here, served the way the
  answer is (a browserless route: ``bench.settings`` adds its prefix): the answer's own
  signature check, one indexed read made as the answer reads, and a constant NCCO. The
  signature check and a read per call are what the issue rules keep (no weaker check,
  no cache that could connect an ended conversation): the answer against this floor is
  what its own work costs beyond them, the numbers' normalisation included (the minimum
  reads the query's values as they come). A miss answers 404, so that the load generator
  counts it instead of measuring a cheaper read.
- ``/bench/bare-api``: a DRF view with the API's own authentication (API key look-up),
  throttle and JSON parser, answering 201: the ceiling for conversation creation.
- ``/bench/sms-signed``: the inbound SMS webhook's own reading and ``sig`` check, answering
  200 with no work: the ceiling of any inbound SMS webhook.
"""

import json
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bench import reads
from bench.reads import ONE_READ_SQL
from proxy.phone import from_webhook
from proxy.selectors import route_for_call
from webhooks.sms_views import signed_sms_webhook
from webhooks.views import signed_voice_webhook

_CONSTANT_NCCO = [{"action": "talk", "text": "Sorry, we could not find a conversation for your number. Goodbye."}]


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_CONSTANT_NCCO, safe=False)


signed = signed_voice_webhook(bare)


@signed_sms_webhook
def sms_signed(params: dict[str, str]) -> HttpResponse:
    return HttpResponse(status=200)


def one_read(request: HttpRequest) -> JsonResponse:
    # The way the answer reads: the PostgreSQL backend's lean read (the benchmarks run on PostgreSQL).
    connection.fetch_row(ONE_READ_SQL, [request.GET.get("from", ""), request.GET.get("to", "")])  # type: ignore[attr-defined]
    return JsonResponse(_CONSTANT_NCCO, safe=False)


_CONSTANT_NCCO_JSON = json.dumps(_CONSTANT_NCCO)


@signed_voice_webhook
def webhook_minimum(request: HttpRequest) -> HttpResponse:
    row = connection.fetch_row(ONE_READ_SQL, [request.GET.get("from", ""), request.GET.get("to", "")])  # type: ignore[attr-defined]
    return HttpResponse(_CONSTANT_NCCO_JSON, content_type="application/json", status=200 if row is not None else 404)


def route_table_read(request: HttpRequest) -> JsonResponse:
    caller, dialled = from_webhook(request.GET.get("from")), from_webhook(request.GET.get("to"))
    found = reads.route_table_read(caller or "", dialled or "")
    # A miss would be a cheaper read: counted as a failure by the load generator instead.
    return JsonResponse(_CONSTANT_NCCO, safe=False, status=200 if found is not None else 404)


def route_read(request: HttpRequest) -> JsonResponse:
    route_for_call(caller=from_webhook(request.GET.get("from")), proxy_number=from_webhook(request.GET.get("to")))
    return JsonResponse(_CONSTANT_NCCO, safe=False)


class BareApi(APIView):
    def post(self, request: Request) -> Response:
        body: Any = request.data
        return Response({"participants": len(body.get("participants", []))}, status=201)


urlpatterns = [
    path("bench/bare", bare, name="bench-bare"),
    path("bench/signed", signed, name="bench-signed"),
    path("bench/one-read", one_read, name="bench-one-read"),
    path("bench/route-read", route_read, name="bench-route-read"),
    path("bench/route-table-read", route_table_read, name="bench-route-table-read"),
    path("bench/webhook/minimum", webhook_minimum, name="bench-webhook-minimum"),
    path("bench/bare-api", BareApi.as_view(), name="bench-bare-api"),
    path("bench/sms-signed", sms_signed, name="bench-sms-signed"),
    path("", include("config.urls")),
]
