import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Import every view now (Django would on the first request), then freeze: what is
# loaded so far lives as long as the process, and frozen, the collector stops walking
# it. Unfrozen, each worker's first full collections took 60 to 200 ms under load,
# and the answer webhook's p99 with them (bench/RESULTS.md).
get_resolver().url_patterns  # noqa: B018
gc.freeze()
