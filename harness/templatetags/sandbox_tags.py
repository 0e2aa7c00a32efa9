from django import template

from proxy.phone import mask

register = template.Library()


@register.filter(name="mask")
def mask_number(value: str | None) -> str:
    """Real numbers are personal data: lists show them masked."""
    return mask(value)
