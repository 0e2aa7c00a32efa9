"""What the SMS webhooks do: keep each callback once for audit, apply delivery receipts, and
pass each inbound SMS on once (relayed, kept, or waiting for its other parts)."""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction
from django.utils import timezone

from proxy.message_outbox import CLIENT_REF_PREFIX as MESSAGE_REF_PREFIX
from proxy.message_outbox import message_receipt_apply
from proxy.message_parts import InboundPart, message_part_receive
from proxy.messaging import InboundText, text_receive
from proxy.models import CallEvent, insert_row
from proxy.notifications import notification_receipt_apply
from proxy.phone import mask
from webhooks.payloads import INBOUND_SMS_KEY, SMS_TRANSPORT_FIELDS, InboundSms, inbound_sms, sms_event_key

logger = logging.getLogger("webhooks.sms")

_RECEIPT_KEY = ("messageId", "status", "err-code", "message-timestamp", "client-ref")


def _keep(params: dict[str, str], *, source: str, kind: str, key_fields: tuple[str, ...]) -> bool:
    """Store the raw callback once; False when it was seen before."""
    content = {k: v for k, v in params.items() if k not in SMS_TRANSPORT_FIELDS}
    event = CallEvent(
        kind=kind,
        status=str(content.get("status", ""))[:20],
        source=source,
        dedup_key=sms_event_key(params, source=source, key_fields=key_fields),
        payload=content,
    )
    # One statement: no savepoint round trips; a concurrent copy of the same callback waits
    # for the first's transaction, then finds it.
    return insert_row(event, unless_exists="dedup_key")


def sms_receipt_receive(*, params: dict[str, str]) -> None:
    """A delivery receipt: update the outbox row it is about (an SMS notification or a text);
    nothing when none matches."""
    # One transaction: a receipt whose update fails is not remembered as seen, so
    # Vonage's retry applies it.
    with transaction.atomic():
        fresh = _keep(params, source="sms-status", kind="sms_receipt", key_fields=_RECEIPT_KEY)
        if not fresh:
            return
        is_text = (params.get("client-ref") or "").startswith(MESSAGE_REF_PREFIX)
        applied = not is_text and notification_receipt_apply(params=params) is not None
        applied = applied or message_receipt_apply(params=params) is not None
        if not applied:
            logger.info("delivery receipt for an unknown message (%s)", mask(params.get("msisdn")))


def sms_inbound_receive(*, params: dict[str, str]) -> None:
    """An SMS someone sent to a pool number: kept once, and passed on once.

    The raw callback and what it leads to (a relay queued, a text kept, a part waiting)
    are written in one transaction, so a Vonage retry of the same ``messageId`` finds
    it seen and changes nothing, and a failure leaves it unseen for the retry. Input
    no SMS could carry is kept, never an error; an unexpected error in passing it on is
    logged and the raw callback is still kept (a database that fails raises: Vonage
    retries).
    """
    sms = inbound_sms(params)
    try:
        with transaction.atomic():
            if not _keep(params, source="sms-inbound", kind="sms_inbound", key_fields=INBOUND_SMS_KEY):
                return
            _pass_on(sms)
    except DatabaseError:
        raise
    except Exception as exc:
        # Not logged with its message: it could quote the text.
        logger.error("inbound SMS %s could not be passed on (%s); kept for audit", sms.message_id, type(exc).__name__)
        _keep(params, source="sms-inbound", kind="sms_inbound", key_fields=INBOUND_SMS_KEY)


def _pass_on(sms: InboundSms) -> None:
    if sms.concat is not None and sms.message_id:
        ref, total, part = sms.concat
        message_part_receive(
            part=InboundPart(
                message_id=sms.message_id,
                sender_raw=sms.sender_raw,
                to_raw=sms.to_raw,
                ref=ref,
                total=total,
                part=part,
                text=sms.text or "",
                encoding=sms.encoding,
            )
        )
        return
    text_receive(
        inbound=InboundText(
            sender=sms.sender,
            to=sms.to,
            text=sms.text,
            encoding=sms.encoding,
            ids=(sms.message_id,) if sms.message_id else (),
            sender_raw=sms.sender_raw,
            to_raw=sms.to_raw,
            received_at=timezone.now(),
        )
    )
