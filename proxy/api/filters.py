"""Query filters of the conversation list."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from proxy.models import Conversation

OPEN = Conversation.Status.OPEN
EXPIRED = Conversation.Status.EXPIRED


class ConversationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=Conversation.Status.choices,
        method="filter_status",
        help_text="Effective status: an open conversation past its expires_at counts as expired.",
    )
    external_id = django_filters.CharFilter(max_length=200, help_text="Exact match.")

    class Meta:
        model = Conversation
        fields = ["status", "external_id"]

    def filter_status(self, queryset: QuerySet[Conversation], name: str, value: str) -> QuerySet[Conversation]:
        # Matches Conversation.effective_status, so a sweep that has not run yet changes nothing.
        return queryset.with_effective_status(value)  # type: ignore[attr-defined]
