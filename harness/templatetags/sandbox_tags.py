from django import template

from proxy.phone import mask

register = template.Library()


@register.filter(name="mask")
def mask_number(value: str | None) -> str:
    """Real numbers are personal data: lists show them masked."""
    return mask(value)


@register.filter(name="mask_digits")
def mask_digits(value: str | None) -> str:
    """Runs of six or more digits masked: an SMS text may name a PIN, a secret."""
    from harness.masking import text_mask

    return text_mask(value or "")
