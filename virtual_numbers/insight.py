"""Number Insight look-ups, cached a day per number.

What a result means for a conversation (an invalid number closes it) is decided in
``proxy.validation``; this module only looks numbers up and remembers the answers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from proxy.phone import mask
from telephony.registry import get_provider
from virtual_numbers.models import NumberCheck

logger = logging.getLogger(__name__)

CACHE_TTL = timedelta(days=1)


def number_check_get(*, number: str, now: datetime | None = None) -> NumberCheck:
    """What Number Insight says about ``number``, from the cache when checked within a day.

    Raises ProviderError when the look-up fails.
    """
    now = now or timezone.now()
    cached = NumberCheck.objects.filter(number=number, checked_at__gte=now - CACHE_TTL).first()
    if cached is not None:
        return cached
    result = get_provider().number_insight(number, level=settings.NUMBER_INSIGHT_LEVEL)
    values = {
        "valid": result.valid,
        "country": (result.country or "")[:2],
        "number_type": (result.number_type or "")[:30],
        "carrier": (result.carrier or "")[:100],
        "ported": result.ported,
        "raw": result.raw,
        "checked_at": now,
    }
    try:
        with transaction.atomic():
            check, _ = NumberCheck.objects.update_or_create(number=number, defaults=values)
    except IntegrityError:
        # Another worker checked the same number at the same moment; theirs is as good.
        check = NumberCheck.objects.get(number=number)
    logger.info("number %s checked: valid=%s type=%s", mask(number), result.valid, result.number_type)
    return check


def number_checks_prune(*, now: datetime | None = None, keep: timedelta = timedelta(days=30)) -> int:
    """Forget look-ups older than ``keep``: they are personal data and long stale."""
    now = now or timezone.now()
    deleted, _ = NumberCheck.objects.filter(checked_at__lt=now - keep).delete()
    return deleted
