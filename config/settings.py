"""Settings for the masked-calling product, read from the environment (12-factor).

Every variable is documented in the README. Secrets may also be given as
``NAME_FILE`` (a path whose contents are the value), as Docker and Kubernetes do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.FileAwareEnv()

TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105
    else:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off.")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Base of every URL written into NCCOs and SMS callbacks (what Vonage can reach).
PUBLIC_URL = env.str("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "unfold",  # admin theme: must come before django.contrib.admin
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "proxy",
    "virtual_numbers",
    "webhooks",
    "telephony",
    "harness",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "proxy.middleware.RequestSizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
VAR_DIR.mkdir(exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so two writers queue
    # instead of failing with "database is locked" half way through.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # Persistent connections: the answer webhook must not pay for a new one.
    # (Tests close them after each request, so live-server threads leave no session behind.)
    _db["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0 if TESTING else 600)
    _db["CONN_HEALTH_CHECKS"] = True
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        # Bind parameters on the server and let psycopg prepare a statement once it has run
        # five times on a connection: PostgreSQL then skips parsing and planning, which was
        # most of its work for the answer webhook's read (0.42 ms of CPU, 0.07 prepared).
        # Turn off behind a pooler in transaction mode that cannot track prepared
        # statements (PgBouncer before 1.21).
        _db.setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 5})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Celery --------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
# Without a broker the product still works: tasks run in-process, after commit.
# Tests run tasks eagerly even with REDIS_URL set; tests/test_worker_redis.py turns a real worker on.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL or TESTING)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 90
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Auth, i18n, static -------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (TLS ends at the reverse proxy) --------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG and not TESTING)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Request bodies over this get 413 (proxy.middleware.RequestSizeLimitMiddleware).
MAX_REQUEST_BODY_BYTES = 64 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- REST API -----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["proxy.authentication.ServiceKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["proxy.authentication.IsService"],
    "DEFAULT_THROTTLE_CLASSES": ["proxy.throttling.ServiceRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["proxy.api.parsers.SafeJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "proxy.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "proxy.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Masked calling API",
    "DESCRIPTION": "Open masked phone conversations between two people over Vonage.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Swagger UI assets ship with the app: the docs work offline and without a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Product ------------------------------------------------------------------
PROXY_DEFAULT_TTL = env.int("PROXY_DEFAULT_TTL", default=24 * 3600)
PROXY_DEFAULT_COOLDOWN = env.int("PROXY_DEFAULT_COOLDOWN", default=3600)
PROXY_DEFAULT_RATE_LIMIT = env.int("PROXY_DEFAULT_RATE_LIMIT", default=50)
PROXY_DEFAULT_COUNTRY = env.str("PROXY_DEFAULT_COUNTRY", default="US")
IDEMPOTENCY_TTL = 24 * 3600
# Number Insight depth for participants' numbers: "basic" (format, country) or "standard" (+ line type).
NUMBER_INSIGHT_LEVEL = env.str("NUMBER_INSIGHT_LEVEL", default="standard")
if NUMBER_INSIGHT_LEVEL not in ("basic", "standard"):
    raise ImproperlyConfigured(f"NUMBER_INSIGHT_LEVEL must be 'basic' or 'standard', not {NUMBER_INSIGHT_LEVEL!r}.")
# Days a raw Vonage event keeps its payload (real numbers, inbound SMS text); 0 = for ever.
CALL_EVENT_RETENTION_DAYS = env.int("CALL_EVENT_RETENTION_DAYS", default=90)
# Marketplace callbacks never go to private, loopback or link-local addresses unless this is on.
CALLBACK_ALLOW_PRIVATE_NETWORKS = env.bool("CALLBACK_ALLOW_PRIVATE_NETWORKS", default=False)
# Seconds the answer webhook waits for a marketplace hook (intercept, out of session) in
# all: connect, request and reply. Vonage itself waits at most 5 s for the answer.
HOOK_TIMEOUT = env.float("HOOK_TIMEOUT", default=2.0)
if not 0 < HOOK_TIMEOUT <= 4:
    raise ImproperlyConfigured(f"HOOK_TIMEOUT must be more than 0 and at most 4 seconds, not {HOOK_TIMEOUT!r}.")
# The most of a hook's reply that is read; a longer reply is refused unread.
HOOK_MAX_RESPONSE_BYTES = 64 * 1024

# Admin console (django-unfold); the sidebar is built in config.admin_navigation.
UNFOLD = {
    "SITE_TITLE": "Masked calling",
    "SITE_HEADER": "Masked calling",
    "SIDEBAR": {"show_search": True, "navigation": "config.admin_navigation.sidebar_navigation"},
}
POOL_HEADROOM_WARNING = env.int("POOL_HEADROOM_WARNING", default=2)

# --- Vonage -------------------------------------------------------------------
# With no credentials the built-in sandbox plays Vonage's part.
VONAGE_APPLICATION_ID = env.str("VONAGE_APPLICATION_ID", default="")
VONAGE_PRIVATE_KEY = env.str("VONAGE_PRIVATE_KEY", default="")
VONAGE_API_KEY = env.str("VONAGE_API_KEY", default="")
VONAGE_API_SECRET = env.str("VONAGE_API_SECRET", default="")
VONAGE_SIGNATURE_SECRET = env.str("VONAGE_SIGNATURE_SECRET", default="")
VONAGE_SIGNATURE_METHOD = env.str("VONAGE_SIGNATURE_METHOD", default="md5hash")
# Host overrides aim the real SDK at another server (the sandbox, in tests).
VONAGE_API_HOST = env.str("VONAGE_API_HOST", default="")
VONAGE_REST_HOST = env.str("VONAGE_REST_HOST", default="")
VONAGE_HTTP_TIMEOUT = env.float("VONAGE_HTTP_TIMEOUT", default=10.0)
VONAGE_PROVIDER = env.str("VONAGE_PROVIDER", default="")  # "vonage" | "sandbox" | "" (auto)

# --- Logging --------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The Vonage SDK logs request parameters and error bodies, real numbers included.
        "vonage": {"level": "ERROR"},
        "vonage_number_insight": {"level": "ERROR"},
    },
}
