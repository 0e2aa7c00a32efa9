"""Settings for the masked-calling product, read from the environment (12-factor).

Every variable is documented in the README. Secrets may also be given as
``NAME_FILE`` (a path whose contents are the value), as Docker and Kubernetes do.
"""

from __future__ import annotations

import ipaddress
import sys
from datetime import timedelta
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
    "axes",
    "proxy",
    "virtual_numbers",
    "webhooks",
    "telephony",
    "harness",
]

MIDDLEWARE = [
    # First: everything after it sees X-Forwarded-* only when our own proxy sent them.
    "proxy.middleware.TrustedProxyMiddleware",
    # Then the request line: its request id and duration cover everything below (config.middleware).
    "config.middleware.RequestLogMiddleware",
    "proxy.middleware.RequestSizeLimitMiddleware",
    # Vonage's webhooks leave here: what follows is for browsers and the API (config.middleware).
    "config.middleware.BrowserlessRoutesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: answers a locked-out login with 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
# Paths only Vonage calls: served without the browser middleware (config.middleware).
BROWSERLESS_PATH_PREFIXES: tuple[str, ...] = ("/webhooks/",)
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
    # Django's backend with a health check that asks the socket, not the server (config/postgres).
    _db["ENGINE"] = "config.postgres"
    # A persistent connection is checked before a request reuses it: after a PostgreSQL
    # restart or a terminated backend the first request reconnects instead of failing, and
    # its prepared statements go with the old connection.
    _db["CONN_HEALTH_CHECKS"] = True
    # TCP keepalives on idle connections: a peer gone without a word is noticed (the
    # health check then drops the connection), and no NAT gateway or load balancer on the
    # way forgets an idle connection it would then reset on the next request.
    _db.setdefault("OPTIONS", {}).update(
        {
            "keepalives": 1,
            "keepalives_idle": env.int("DB_KEEPALIVES_IDLE", default=60),
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
    )
    # A PostgreSQL that is down refuses at once; one that does not answer at all must not
    # hold a request (the answer webhook then speaks its "try again" message).
    _db.setdefault("OPTIONS", {})["connect_timeout"] = env.int("DB_CONNECT_TIMEOUT", default=3)
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
# Redis is off the call path (DESIGN.md): a Redis that is down or silent must cost a request
# well under a second, once; config.redis_guard then skips it for a few seconds.
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", default=0.5)
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=0.5)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Passed to redis-py's connection pool, whose connections retry nothing by default.
            "OPTIONS": {
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
            },
        }
    }
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

# Recordings and transcripts live in the default storage: a local folder (MEDIA_ROOT),
# or any S3-compatible bucket through django-storages. Never served as public media:
# the API and the admin stream them, or redirect to a short-lived signed URL.
STORAGE_BACKEND = env.str("STORAGE_BACKEND", default="local")
if STORAGE_BACKEND == "local":
    _default_storage: dict = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
elif STORAGE_BACKEND == "s3":
    if not env.str("S3_BUCKET", default=""):
        raise ImproperlyConfigured("S3_BUCKET is required when STORAGE_BACKEND is 's3'.")
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("S3_BUCKET"),
            # Any S3-compatible service (MinIO, Ceph, R2, ...); empty: AWS.
            "endpoint_url": env.str("S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("S3_REGION", default="") or None,
            # Empty: boto3's own chain (instance role, AWS_* variables, ~/.aws).
            "access_key": env.str("S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("S3_SECRET_ACCESS_KEY", default="") or None,
            "addressing_style": env.str("S3_ADDRESSING_STYLE", default="") or None,
            "signature_version": "s3v4",
            "location": env.str("S3_PREFIX", default=""),
            # Private objects; links are signed and expire.
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": env.int("S3_SIGNED_URL_SECONDS", default=300),
            "file_overwrite": False,
        },
    }
else:
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be 'local' or 's3', not {STORAGE_BACKEND!r}.")
# How the API's recording_url and transcript_url hand a file out: "redirect" to a signed
# URL of the bucket (s3 only), or "stream" it through the web process.
STORAGE_SERVE = env.str("STORAGE_SERVE", default="redirect" if STORAGE_BACKEND == "s3" else "stream")
if STORAGE_SERVE not in ("redirect", "stream") or (STORAGE_SERVE == "redirect" and STORAGE_BACKEND != "s3"):
    raise ImproperlyConfigured("STORAGE_SERVE must be 'stream', or 'redirect' with STORAGE_BACKEND 's3'.")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (TLS ends at the reverse proxy) --------------------------------
# X-Forwarded-Proto (and -For) count only from these addresses or networks: the reverse
# proxies in front of the web tier (proxy.middleware.TrustedProxyMiddleware drops them
# from anyone else, so a client cannot claim https or another address).
TRUSTED_PROXIES = env.list("DJANGO_TRUSTED_PROXIES", default=["127.0.0.1", "::1"])
try:
    # A tuple: proxy.middleware keeps each peer's verdict keyed by it.
    TRUSTED_PROXY_NETWORKS = tuple(ipaddress.ip_network(value.strip(), strict=False) for value in TRUSTED_PROXIES)
except ValueError as _exc:
    raise ImproperlyConfigured(f"DJANGO_TRUSTED_PROXIES: {_exc}") from _exc
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
# With TLS on (the HTTPS redirect), browsers are told to use nothing else for a year.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000 if SECURE_SSL_REDIRECT else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG and not TESTING)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Staff logins (django-axes): five wrong passwords from one client address lock that
# address out of the login for 15 minutes (429); the address is the one our trusted
# proxy saw, never one a client wrote into X-Forwarded-For itself.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_CLIENT_IP_CALLABLE = "proxy.middleware.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

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
# Retention (proxy.retention): a service keeps an ended conversation's personal data
# (recordings, transcripts, message texts, names, real numbers, raw event payloads) for its
# retention_days; new services get the default, staff may set 1 day up to the maximum.
RETENTION_MAX_DAYS = env.int("RETENTION_MAX_DAYS", default=90)
RETENTION_DEFAULT_DAYS = env.int("RETENTION_DEFAULT_DAYS", default=RETENTION_MAX_DAYS)
if not 1 <= RETENTION_DEFAULT_DAYS <= RETENTION_MAX_DAYS:
    raise ImproperlyConfigured("RETENTION_DEFAULT_DAYS must be between 1 and RETENTION_MAX_DAYS.")
# Days a raw Vonage event that belongs to no conversation (an unknown caller's, say) keeps
# its payload; 0 = for ever. Events of a conversation follow its service's retention_days.
CALL_EVENT_RETENTION_DAYS = env.int("CALL_EVENT_RETENTION_DAYS", default=90)
# Copying recordings and transcripts from Vonage: the largest file taken, the whole
# download's time limit (seconds), and how long an attempt holds its row before another
# worker may take it up (longer than the download's limit).
RECORDING_MAX_BYTES = env.int("RECORDING_MAX_BYTES", default=200 * 1024 * 1024)
TRANSCRIPT_MAX_BYTES = env.int("TRANSCRIPT_MAX_BYTES", default=10 * 1024 * 1024)
RECORDING_DOWNLOAD_SECONDS = env.float("RECORDING_DOWNLOAD_SECONDS", default=120.0)

# Masked messages: defaults of new services' abuse caps (0 = no cap), and how long the parts
# of a concatenated inbound SMS are waited for before what arrived is relayed as it is.
PROXY_DEFAULT_MESSAGE_LIMIT_CONVERSATION = env.int("PROXY_DEFAULT_MESSAGE_LIMIT_CONVERSATION", default=100)
PROXY_DEFAULT_MESSAGE_LIMIT_SERVICE = env.int("PROXY_DEFAULT_MESSAGE_LIMIT_SERVICE", default=6000)
MESSAGE_PARTS_WAIT_SECONDS = env.int("MESSAGE_PARTS_WAIT_SECONDS", default=60)

# Outboxes (proxy.outbox): a worker's lease on a row, how late a row may be before the
# redrive presumes its task lost, and how often the redrive runs (beat). A task lost with
# its worker is done again within lease + grace + redrive period (two minutes by default).
OUTBOX_LEASE_SECONDS = env.int("OUTBOX_LEASE_SECONDS", default=45)
OUTBOX_REDRIVE_GRACE_SECONDS = env.int("OUTBOX_REDRIVE_GRACE_SECONDS", default=30)
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
# Open PIN participants one proxy number should carry in PIN mode "always" (pool health):
# a random six-digit guess finds one of them with probability this / 1,000,000.
PIN_NUMBER_CAPACITY = env.int("PIN_NUMBER_CAPACITY", default=10_000)

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
VONAGE_PROVIDER = env.str("VONAGE_PROVIDER", default="").strip().lower()  # "vonage" | "sandbox" | "" (auto)


def _fail_closed_problems() -> list[str]:
    """What stops a deployment (DJANGO_DEBUG off) from loading; each names its variable.

    DESIGN.md "Failing closed": the provider is chosen explicitly, webhooks are signed, a
    live provider has every credential, and Vonage reaches us over https. Guessing
    instead (no credentials meaning the sandbox, no secret meaning unsigned webhooks)
    would turn a missing variable into a product that answers anyone.
    """
    problems = []
    if VONAGE_PROVIDER not in ("vonage", "sandbox"):
        problems.append(f"VONAGE_PROVIDER must be set to 'vonage' or 'sandbox' (got {VONAGE_PROVIDER!r}).")
    if not VONAGE_SIGNATURE_SECRET.strip():
        problems.append("VONAGE_SIGNATURE_SECRET must be set: without it webhooks would be accepted unsigned.")
    if VONAGE_PROVIDER == "vonage":
        for name, value in (
            ("VONAGE_APPLICATION_ID", VONAGE_APPLICATION_ID),
            ("VONAGE_PRIVATE_KEY", VONAGE_PRIVATE_KEY),
            ("VONAGE_API_KEY", VONAGE_API_KEY),
            ("VONAGE_API_SECRET", VONAGE_API_SECRET),
        ):
            if not value.strip():
                problems.append(f"{name} must be set when VONAGE_PROVIDER is 'vonage'.")
        if not PUBLIC_URL.lower().startswith("https://"):
            problems.append(f"PUBLIC_URL must be an https URL when VONAGE_PROVIDER is 'vonage' (got {PUBLIC_URL!r}).")
    return problems


# Tests set what each case needs through settings overrides; tests/test_fail_closed.py
# loads the product in fresh interpreters to check this guard.
if not DEBUG and not TESTING and (_problems := _fail_closed_problems()):
    raise ImproperlyConfigured(" ".join(_problems))

# --- Logs, metrics, errors ------------------------------------------------------------
# JSON lines in production (one object per line: time, level, logger, message,
# request_id and the line's fields); plain text for people at a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG or TESTING else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'plain', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "config.logs.RequestIdFilter"},
        # The net under proxy.phone.mask: no whole real number in any line.
        "redact_numbers": {"()": "config.logs.RedactNumbers"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "config.logs.json_formatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact_numbers"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The request line (config.middleware) replaces Django's own for 4xx/5xx.
        "django.request": {"level": "ERROR"},
        # The Vonage SDK logs request parameters and error bodies, real numbers included.
        "vonage": {"level": "ERROR"},
        "vonage_number_insight": {"level": "ERROR"},
    },
}
# Workers log through the same handlers (JSON, request ids) instead of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# GET /metrics (Prometheus) needs "Authorization: Bearer <METRICS_TOKEN>"; unset: no endpoint.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Optional error reports; real numbers are scrubbed before anything is sent (config.sentry).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="")
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="")
