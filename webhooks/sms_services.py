"""What the SMS webhooks do: keep each callback once for audit, apply delivery receipts."""

from __future__ import annotations

import hashlib
import json
import logging

from django.db import IntegrityError, transaction

from proxy.models import CallEvent
from proxy.notifications import notification_receipt_apply
from proxy.phone import mask

logger = logging.getLogger("webhooks.sms")

# Not part of what a receipt says; left out of the duplicate check.
_TRANSPORT_FIELDS = ("sig", "timestamp", "nonce")


def _keep(params: dict[str, str], *, source: str, kind: str, key_fields: tuple[str, ...]) -> bool:
    """Store the raw callback once; False when it was seen before."""
    content = {k: v for k, v in params.items() if k not in _TRANSPORT_FIELDS}
    identity = [source] + [str(content.get(field, "")) for field in key_fields]
    if not any(identity[1:]):
        identity.append(json.dumps(content, sort_keys=True))
    dedup_key = hashlib.sha256("\x1f".join(identity).encode()).hexdigest()
    try:
        with transaction.atomic():
            CallEvent.objects.create(
                kind=kind,
                status=str(content.get("status", ""))[:20],
                source=source,
                dedup_key=dedup_key,
                payload=content,
            )
    except IntegrityError:
        return False
    return True


def sms_receipt_receive(*, params: dict[str, str]) -> None:
    """A delivery receipt: update the SMS outbox row it is about (nothing when none matches)."""
    # One transaction: a receipt whose update fails is not remembered as seen, so
    # Vonage's retry applies it.
    with transaction.atomic():
        fresh = _keep(
            params,
            source="sms-status",
            kind="sms_receipt",
            key_fields=("messageId", "status", "err-code", "message-timestamp", "client-ref"),
        )
        if fresh and notification_receipt_apply(params=params) is None:
            logger.info("delivery receipt for an unknown message (%s)", mask(params.get("msisdn")))


def sms_inbound_receive(*, params: dict[str, str]) -> None:
    """An SMS someone sent to a pool number: kept for audit, nothing else happens."""
    if _keep(params, source="sms-inbound", kind="sms_inbound", key_fields=("messageId",)):
        logger.info("inbound SMS from %s to %s", mask(params.get("msisdn")), params.get("to", ""))
