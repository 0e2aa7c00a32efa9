"""The staff dashboard: pool health per service and country, and call charts."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from proxy.models import Service
from virtual_numbers.charts import Point, bar_chart, line_chart
from virtual_numbers.selectors import PIN_LOAD_WARNING, calls_per_day, pool_health

DAY_CHOICES = (7, 14, 30, 90)


def _int_param(request: HttpRequest, name: str) -> int | None:
    try:
        return int(request.GET.get(name, ""))
    except ValueError:
        return None


@staff_member_required
# Staff alone is not a role: the page is for those who may see the pool.
@permission_required("numbers.view_virtualnumber", raise_exception=True)
def pool_health_view(request: HttpRequest) -> HttpResponse:
    services = list(Service.objects.order_by("name"))
    service_id = _int_param(request, "service")
    service = next((s for s in services if s.pk == service_id), None)
    days = _int_param(request, "days")
    days = days if days in DAY_CHOICES else 14

    rows = pool_health(service=service)
    stats = calls_per_day(service=service, days=days)
    labels = [f"{s.day:%d %b}" for s in stats]
    answer_rates = [None if s.answer_rate is None else round(100 * s.answer_rate, 1) for s in stats]
    total_calls = sum(s.calls for s in stats)
    total_answered = sum(s.answered for s in stats)
    context = {
        **admin.site.each_context(request),
        "title": "Pool health",
        "rows": rows,
        "warnings": [row for row in rows if row.warning],
        "threshold": settings.POOL_HEADROOM_WARNING,
        "pin_capacity": settings.PIN_NUMBER_CAPACITY,
        "pin_load_warning": PIN_LOAD_WARNING,
        "services": services,
        "service": service,
        "days": days,
        "day_choices": DAY_CHOICES,
        "totals": {
            "numbers": sum(row.numbers for row in rows),
            "usable": sum(row.usable for row in rows),
            "open_conversations": sum(row.open_conversations for row in rows),
            "exhaustions_24h": sum(row.exhaustions_24h for row in rows),
            "calls": total_calls,
            "answer_rate": round(100 * total_answered / total_calls) if total_calls else None,
            "minutes": round(sum(s.seconds for s in stats) / 60),
        },
        "calls_chart": bar_chart(
            [Point(label, s.calls) for label, s in zip(labels, stats, strict=True)], title="Calls per day", whole=True
        ),
        "answer_chart": line_chart(
            [Point(label, rate) for label, rate in zip(labels, answer_rates, strict=True)],
            title="Answer rate per day",
            unit="%",
            y_max=100,
        ),
        "minutes_chart": bar_chart(
            [Point(label, s.minutes) for label, s in zip(labels, stats, strict=True)],
            title="Talk minutes per day",
            unit="",
        ),
    }
    return TemplateResponse(request, "dashboard/pool_health.html", context)
