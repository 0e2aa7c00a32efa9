"""The SMS outbox, writer side: tell each participant which number to call.

A row is written in the same transaction as the conversation, with its final text, and
is the truth about the message: a worker (``proxy.delivery.sms``) sends exactly that
text, and every attempt ends in a recorded state (queued with an error and a retry,
sent, delivered or failed). Delivery receipts and staff retries are applied here.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from proxy.models import Conversation, Notification, Participant, Service
from proxy.outbox import OutboxKind, RetryPolicy, outbox_kind, queue_on_commit, receipt_row, truncate
from proxy.phone import pretty
from proxy.sms_template import sms_template_render
from telephony.values import vonage_decimal

logger = logging.getLogger(__name__)

CLIENT_REF_PREFIX = "notification-"
SEND_TASK = "proxy.tasks.send_notification"

_MODEL_DEFAULT_TEMPLATE = Service._meta.get_field("sms_template").default

# The service's language picks the text when the service kept the default template.
_DEFAULT_TEMPLATES: dict[str, tuple[str, str]] = {
    "en": ("{service}: to reach {counterpart}, call {proxy_number}.", "the other party"),
    "fr": ("{service} : pour joindre {counterpart}, appelez le {proxy_number}.", "votre interlocuteur"),
    "de": ("{service}: Um {counterpart} zu erreichen, rufen Sie {proxy_number} an.", "Ihr Gegenüber"),
    "es": ("{service}: para contactar con {counterpart}, llame al {proxy_number}.", "la otra persona"),
    "it": ("{service}: per contattare {counterpart}, chiama il {proxy_number}.", "l'altra persona"),
    "pt": ("{service}: para falar com {counterpart}, ligue para {proxy_number}.", "a outra pessoa"),
    "nl": ("{service}: bel {proxy_number} om {counterpart} te bereiken.", "de andere partij"),
}

# With PINs on, a template without {pin} gets this sentence after it.
_PIN_SENTENCES: dict[str, str] = {
    "en": "When asked, enter PIN {pin}.",
    "fr": "Quand on vous le demande, tapez le code {pin}.",
    "de": "Geben Sie auf Nachfrage die PIN {pin} ein.",
    "es": "Cuando se le pida, marque el PIN {pin}.",
    "it": "Quando richiesto, digita il PIN {pin}.",
    "pt": "Quando solicitado, digite o PIN {pin}.",
    "nl": "Toets desgevraagd pincode {pin} in.",
}
# Stands for the PIN until the number scrub has run: six digits could read as the end of a phone number.
_PIN_MARK = "\x00pin\x00"

# A run of digits that could be a phone number, with the separators people type.
_NUMBER_LIKE = re.compile(r"\+?\d[\d\s().\-/]{4,}\d")


def _language(service: Service) -> str:
    code = (service.language or "en").split("-")[0].lower()
    return code if code in _DEFAULT_TEMPLATES else "en"


def _scrub_numbers(text: str, *, forbidden: set[str]) -> str:
    """Replace anything in ``text`` that reads as one of the ``forbidden`` real numbers.

    Names are free text: a marketplace may well send a phone number as a name.
    """

    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        for number in forbidden:
            # Compare on the last nine digits: covers national and international forms.
            tail = number[-9:]
            if len(digits) >= 6 and (tail.endswith(digits[-9:]) or digits.endswith(tail)):
                return "…"
        return match.group(0)

    return _NUMBER_LIKE.sub(replace, text)


def notification_text_render(*, service: Service, recipient: Participant, counterpart: Participant) -> str:
    """The SMS for ``recipient``: the number to call (their proxy number) to reach ``counterpart``,
    and their PIN when they have one.

    Uses the service's template, or the default one in the service's language; a PIN
    the template does not place (``{pin}``) gets a sentence of its own at the end.
    Never contains a real number.
    """
    language = _language(service)
    default_template, anonymous = _DEFAULT_TEMPLATES[language]
    template = service.sms_template or default_template
    if template == _MODEL_DEFAULT_TEMPLATE:
        template = default_template
    if recipient.pin and "{pin}" not in template:
        template = f"{template} {_PIN_SENTENCES[language]}"
        default_template = f"{default_template} {_PIN_SENTENCES[language]}"
    values = {
        "service": service.name,
        "name": recipient.name or "",
        "counterpart": counterpart.name or anonymous,
        "proxy_number": pretty(recipient.proxy_number_id),
        # A mark, not the digits: the number scrub below must not take a PIN for a number.
        "pin": _PIN_MARK if recipient.pin else "",
    }
    text = sms_template_render(template, values)
    if text is None:
        logger.warning("service %s has a malformed SMS template; using the default", service.pk)
        text = sms_template_render(default_template, values) or ""
    text = _scrub_numbers(text, forbidden={recipient.real_number, counterpart.real_number})
    return text.replace(_PIN_MARK, recipient.pin or "").strip()[:1600]


def notifications_create_for_conversation(
    *, conversation: Conversation, participants: list[Participant]
) -> list[Notification]:
    """One queued SMS per participant (of a two-party conversation), in the caller's transaction."""
    service = conversation.service
    rows = []
    for participant in participants:
        others = [p for p in participants if p.pk != participant.pk]
        if not others:
            continue
        rows.append(
            Notification(
                participant=participant,
                service=service,
                to_number=participant.real_number,
                from_number=participant.proxy_number_id,
                text=notification_text_render(service=service, recipient=participant, counterpart=others[0]),
            )
        )
    return Notification.objects.bulk_create(rows)


# --- Delivery receipts ------------------------------------------------------------------------

RECEIPT_STATUS = {
    "delivered": Notification.Status.DELIVERED,
    "failed": Notification.Status.FAILED,
    "rejected": Notification.Status.FAILED,
    "expired": Notification.Status.FAILED,
    "accepted": Notification.Status.SENT,
    "buffered": Notification.Status.SENT,
}
_FINAL = (Notification.Status.DELIVERED, Notification.Status.FAILED)


def _receipt_target(params: dict[str, str]) -> Notification | None:
    return receipt_row(Notification.objects.all(), params, client_ref_prefix=CLIENT_REF_PREFIX)


def notification_receipt_apply(*, params: dict[str, str]) -> Notification | None:
    """Apply a Vonage delivery receipt to its outbox row; None when it matches no row.

    Status only moves forward (queued → sent → delivered | failed), so a repeated or
    late receipt changes nothing.
    """
    notification = _receipt_target(params)
    if notification is None:
        return None
    receipt = (params.get("status") or "").lower()
    new_status = RECEIPT_STATUS.get(receipt)
    if new_status is None or notification.status in _FINAL:
        return notification
    if new_status == Notification.Status.SENT and notification.status == Notification.Status.SENT:
        return notification
    # A receipt settles a send whose worker died before recording it (matched by client-ref).
    changes: dict[str, Any] = {
        "status": new_status,
        "updated_at": timezone.now(),
        "sending_since": None,
        "next_attempt_at": None,
    }
    message_id = params.get("messageId") or params.get("message-id") or ""
    if message_id and not notification.message_id:
        changes["message_id"] = message_id
    price = vonage_decimal(params.get("price"), max_digits=14, places=8)
    if price is not None:
        changes["price"] = price
    if new_status == Notification.Status.FAILED:
        changes["last_error"] = truncate(f"Delivery receipt: {receipt} (err-code {params.get('err-code', '?')})")
    Notification.objects.filter(pk=notification.pk, status=notification.status).update(**changes)
    notification.refresh_from_db()
    return notification


def notification_retry(*, notification: Notification) -> bool:
    """Staff: try a failed SMS again, from scratch, while its conversation is still live."""
    if notification.status != Notification.Status.FAILED or not notification.participant.conversation.is_live:
        return False
    updated = Notification.objects.filter(pk=notification.pk, status=Notification.Status.FAILED).update(
        status=Notification.Status.QUEUED,
        attempts=0,
        last_error="",
        updated_at=timezone.now(),
        next_attempt_at=None,
        sending_since=None,
    )
    if updated:
        queue_on_commit(SEND_TASK, notification.pk)
    return bool(updated)


def notifications_queue_for_conversation(*, conversation_id: Any) -> int:
    """Queue the sending of a conversation's queued SMS (once its numbers are known good)."""
    queued = Notification.objects.filter(
        participant__conversation_id=conversation_id, status=Notification.Status.QUEUED
    ).values_list("pk", flat=True)
    count = 0
    for pk in queued:
        queue_on_commit(SEND_TASK, pk)
        count += 1
    return count


def client_ref_for(notification: Notification) -> str:
    return f"{CLIENT_REF_PREFIX}{notification.pk}"


def _waiting() -> QuerySet[Notification]:
    return Notification.objects.filter(status=Notification.Status.QUEUED)


SMS = outbox_kind(
    OutboxKind(
        name="notifications",
        task=SEND_TASK,
        retry=RetryPolicy(base_seconds=10.0, cap_seconds=600.0, max_attempts=8),
        waiting=_waiting,
    )
)


def notifications_fail_for_invalid_numbers(*, conversation_id: Any, now: datetime | None = None) -> None:
    """Fail a conversation's queued SMS because a participant's number is invalid."""
    now = now or timezone.now()
    queued = Notification.objects.filter(
        participant__conversation_id=conversation_id, status=Notification.Status.QUEUED
    )
    invalid_here = Q(participant__validation=Participant.Validation.INVALID)
    queued.filter(invalid_here).update(
        status=Notification.Status.FAILED, last_error="Not sent: the number is not valid.", updated_at=now
    )
    queued.exclude(invalid_here).update(
        status=Notification.Status.FAILED,
        last_error=truncate("Not sent: the other participant's number is not valid."),
        updated_at=now,
    )
