"""SMS text encoding: what fits the GSM 03.38 alphabet, and what needs ``type=unicode``."""

from __future__ import annotations

GSM_CHARS = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def needs_unicode(text: str) -> bool:
    return not set(text) <= GSM_CHARS
