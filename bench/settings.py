"""The product's settings plus the bare baseline view's URL; nothing else changes.

The runner (``python -m bench``) sets DATABASE_URL, REDIS_URL and DJANGO_SECRET_KEY in
the environment before Django reads this, so the server under test is configured the
way production is (PostgreSQL with persistent connections, Redis broker and cache).
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

# The load generator sends no Host header other than 127.0.0.1.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# Cache keys (throttle counters) of the benchmark stay apart from any other user of that Redis.
CACHES["default"]["KEY_PREFIX"] = "bench"  # noqa: F405

# The webhook minimum's floor (bench/urls.py) is served the way the webhooks are.
BROWSERLESS_PATH_PREFIXES = (*BROWSERLESS_PATH_PREFIXES, "/bench/webhook/")  # noqa: F405
