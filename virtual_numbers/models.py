"""The pool: numbers the Vonage account rents, and what we learnt about numbers."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class VirtualNumber(models.Model):
    """A number the Vonage account rents, in a service's pool (or in none)."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        DRAINING = "draining", "Draining (no new conversations)"
        RELEASED = "released", "Released"

    class Type(models.TextChoices):
        MOBILE = "mobile-lvn", "Mobile"
        LANDLINE = "landline", "Landline"
        TOLL_FREE = "landline-toll-free", "Toll free"

    number = models.CharField(max_length=15, unique=True, help_text="E.164 digits without +.")
    country = models.CharField(max_length=2)
    number_type = models.CharField(max_length=20, choices=Type.choices, default=Type.MOBILE)
    voice = models.BooleanField(default=True)
    sms = models.BooleanField(default=True)
    service = models.ForeignKey(
        "proxy.Service", on_delete=models.PROTECT, null=True, blank=True, related_name="numbers"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    monthly_cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    linked_app_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["country", "number"]
        indexes = [models.Index(fields=["service", "state", "country"], name="number_pool")]

    def __str__(self) -> str:
        return f"+{self.number}"


class NumberCheck(models.Model):
    """A cached Number Insight answer for one real number (looked up at most once a day)."""

    number = models.CharField(max_length=15, unique=True)
    valid = models.BooleanField(null=True)
    country = models.CharField(max_length=2, blank=True, default="")
    number_type = models.CharField(max_length=30, blank=True, default="")
    carrier = models.CharField(max_length=100, blank=True, default="")
    ported = models.BooleanField(null=True)
    raw = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"check {self.pk}"


class PoolExhaustion(models.Model):
    """A 409 pool_exhausted answer, kept so staff see where the pool is too small."""

    service = models.ForeignKey("proxy.Service", on_delete=models.CASCADE, related_name="+")
    country = models.CharField(max_length=2)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name_plural = "pool exhaustions"

    def __str__(self) -> str:
        return f"pool exhausted {self.country} at {self.created_at:%Y-%m-%d %H:%M}"
