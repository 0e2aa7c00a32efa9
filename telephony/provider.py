"""The one interface through which the product asks anything of Vonage.

Two implementations exist: ``telephony.vonage_provider.VonageProvider`` on the
official SDK, and ``telephony.sandbox`` which plays Vonage's part on one machine.
``telephony.registry.get_provider()`` picks one from settings. Nothing outside ``telephony`` imports
the SDK, except the NCCO builder (``proxy.ncco``), which uses its action models.

Every method either returns the product's own small typed objects or raises
``ProviderError``; SDK objects and SDK exceptions never leak out.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import urlsplit

# Where Vonage serves the files it keeps for an application (recordings, transcripts).
VONAGE_FILE_HOSTS = (".nexmo.com", ".vonage.com")


def file_url_trusted(url: str, *, aimed_host: str = "") -> bool:
    """Whether ``url`` is an https URL on Vonage's hosts, or on ``aimed_host`` ("host[:port]",
    the server a provider is aimed at instead of Vonage: the sandbox in tests).

    Judged on the parsed hostname and port, never on the text: user info, a look-alike
    netloc or another port of the aimed host is refused.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or 443
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host or parts.username is not None or parts.password is not None:
        return False
    if aimed_host:
        aimed = urlsplit(f"https://{aimed_host}")
        if host == (aimed.hostname or "").lower() and port == (aimed.port or 443):
            return True
    return host.endswith(VONAGE_FILE_HOSTS)


class Writable(Protocol):
    """Where a download goes: anything with ``write`` (a file, a spool, a wrapper of one)."""

    def write(self, data: bytes, /) -> int: ...


class ProviderError(Exception):
    """A call to Vonage failed.

    ``permanent`` says whether retrying the same request can ever succeed:
    throttling, 5xx answers, timeouts and connection errors are not permanent;
    bad parameters, bad credentials, barred numbers, no credit are.
    """

    def __init__(self, message: str, *, permanent: bool, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code

    def __str__(self) -> str:
        kind = "permanent" if self.permanent else "temporary"
        return f"{self.message} ({kind}{', ' + self.code if self.code else ''})"


@dataclass(frozen=True)
class SmsResult:
    message_id: str
    to: str
    price: Decimal | None = None
    network: str = ""


@dataclass(frozen=True)
class InsightResult:
    number: str
    valid: bool
    country: str = ""
    number_type: str = ""  # mobile, landline, virtual, ... ("" when unknown)
    carrier: str = ""
    ported: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AvailableNumber:
    number: str
    country: str
    number_type: str
    features: tuple[str, ...]
    monthly_cost: Decimal | None = None


@dataclass(frozen=True)
class OwnedNumber:
    number: str
    country: str
    number_type: str
    features: tuple[str, ...]
    app_id: str = ""


@dataclass(frozen=True)
class VoiceWebhookUrls:
    """Where the Vonage application sends its voice webhooks, and how.

    POST for all three: the body then carries the call's numbers, and the signed token's
    ``payload_hash`` covers them (a GET's query string is signed by nothing).
    """

    answer_url: str
    event_url: str
    fallback_url: str
    answer_method: str = "POST"
    event_method: str = "POST"
    fallback_method: str = "POST"


@dataclass(frozen=True)
class CallInfo:
    uuid: str
    conversation_uuid: str
    status: str
    direction: str
    from_number: str
    to_number: str
    duration: int | None = None
    price: Decimal | None = None


class Provider(abc.ABC):
    """What the product needs from Vonage. Numbers in and out are E.164 digits without ``+``."""

    name: str = "abstract"

    # --- Messages ---------------------------------------------------------------------------
    @abc.abstractmethod
    def send_sms(
        self, *, from_number: str, to_number: str, text: str, client_ref: str = "", callback_url: str = ""
    ) -> SmsResult:
        """Send one SMS. Must pick unicode encoding itself when ``text`` needs it.

        Raises ProviderError(permanent=False) for throttling (status 1) and internal
        errors (status 5); permanent for every other non-zero status.
        """

    # Whether ``sms_sent_with_ref`` can answer. Vonage cannot (no look-up by client-ref:
    # its delivery receipt, which carries the reference, settles such a send instead).
    can_look_up_sms: bool = False

    def sms_sent_with_ref(self, client_ref: str) -> SmsResult | None:
        """The SMS this account accepted with ``client_ref``, or None when it accepted none.

        For a send whose outcome was never recorded (its worker died during it). Only
        called when ``can_look_up_sms``. Must not send anything.
        """
        raise NotImplementedError

    # --- Number Insight ---------------------------------------------------------------------
    @abc.abstractmethod
    def number_insight(self, number: str, *, level: str = "standard") -> InsightResult:
        """Look a real number up (``level`` is "basic" or "standard").

        An invalid number is a result with ``valid=False``, not an error.
        """

    # --- Numbers ------------------------------------------------------------------------------
    @abc.abstractmethod
    def search_numbers(
        self,
        *,
        country: str,
        number_type: str = "",
        features: tuple[str, ...] = ("VOICE",),
        pattern: str = "",
        size: int = 10,
    ) -> list[AvailableNumber]:
        """Numbers for sale in ``country``. Must not buy anything."""

    @abc.abstractmethod
    def buy_number(self, *, country: str, number: str) -> None:
        """Rent a number. Raises ProviderError(permanent=True) when Vonage refuses (420)."""

    @abc.abstractmethod
    def cancel_number(self, *, country: str, number: str) -> None:
        """Stop renting a number."""

    @abc.abstractmethod
    def link_number(self, *, country: str, number: str, app_id: str = "") -> None:
        """Point an owned number's voice at the Vonage application (default: ours)."""

    @abc.abstractmethod
    def list_owned_numbers(self) -> list[OwnedNumber]:
        """Every number the account rents, all pages."""

    # --- The application ----------------------------------------------------------------------
    def voice_webhooks_set(self, urls: VoiceWebhookUrls) -> None:
        """Point the Vonage application's answer, event and fallback webhooks at ``urls``
        (with their methods) and turn signed callbacks on, keeping everything else the
        application has. Raises ProviderError(permanent=True) where not supported."""
        raise ProviderError(f"{self.name}: cannot configure the application's webhooks", permanent=True)

    # --- Voice call control -----------------------------------------------------------------
    @abc.abstractmethod
    def get_call(self, uuid: str) -> CallInfo:
        """One call leg's current state."""

    @abc.abstractmethod
    def hangup_call(self, uuid: str) -> None:
        """End a call leg. A leg that already ended: ProviderError(permanent=True)."""

    @abc.abstractmethod
    def transfer_call(self, uuid: str, *, ncco: list[dict[str, Any]]) -> None:
        """Replace a running call's NCCO. An NCCO the SDK's models reject fails permanently, unsent."""

    @abc.abstractmethod
    def talk_into_call(self, uuid: str, *, text: str, language: str = "en-US") -> None:
        """Speak text into a running call."""

    @abc.abstractmethod
    def stream_into_call(self, uuid: str, *, url: str) -> None:
        """Play an audio file into a running call."""

    def file_url_trusted(self, url: str) -> bool:
        """Whether ``download_file`` would fetch ``url``: Vonage's file hosts, or the host this
        provider is aimed at. Webhooks use it to refuse a foreign URL before anything is queued."""
        return file_url_trusted(url)

    @abc.abstractmethod
    def download_file(self, url: str, into: Writable, *, max_bytes: int, max_seconds: float) -> int:
        """Copy a file Vonage keeps for the application (a recording, a transcript) into ``into``;
        return how many bytes were written.

        Must refuse, before any request and without sending credentials, a URL that
        ``file_url_trusted`` refuses, and the same for a redirect to one (permanent,
        code ``untrusted-host``). Must stream: never more than one chunk in memory. More
        than ``max_bytes``: permanent, code ``too-large``. Not done within ``max_seconds``:
        temporary, code ``timeout``. On any error ``into`` may hold part of the file.
        """
