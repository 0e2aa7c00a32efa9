"""The Celery app: JSON only, settings under the CELERY_ namespace, tasks autodiscovered."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("masked_calling")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
