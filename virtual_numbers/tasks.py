"""Celery entry points of the pool app."""

from __future__ import annotations

from celery import shared_task

from virtual_numbers.insight import number_checks_prune


@shared_task(ignore_result=True)
def number_checks_prune_task() -> int:
    return number_checks_prune()
