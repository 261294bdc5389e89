"""Settings from the environment (12-factor, after cookiecutter-django).

DJANGO_ENV selects the profile:
- development (default for `make run`): SQLite, Celery's filesystem broker, local media dir; DEBUG stays off
  (friendly error pages, no URL listing) unless DJANGO_DEBUG=true asks for Django's debug pages;
- test: what `make test` uses (PostgreSQL + Redis on 127.0.0.1 unless DATABASE_URL / CELERY_BROKER_URL say else);
- production: DEBUG off, secure cookies, HSTS, SSL redirect; DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS required.

Every knob is read here, from the environment, and listed in README.md's configuration table (a test checks it);
the code reads ``settings``, never the environment. Importing this module writes nothing: the local folders the
development profile needs (SQLite's, the filesystem broker's and result store's) are created when Django starts
(aesplatform.common.apps, ``LOCAL_FOLDERS``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent.parent  # the repository root
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "test", "production"}:
    raise environ.ImproperlyConfigured(f"DJANGO_ENV must be development, test or production, not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

VAR_DIR = Path(env.str("AESP_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DJANGO_DEBUG", default=False)  # Django's debug pages only when asked for (never in production)
if PRODUCTION:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
else:
    # Not a secret: only ever used for local development and tests, never in production (see above).
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-development-key-not-for-production")
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "axes",
    "aesplatform.common",  # no models of its own: creates the local folders when Django starts
    "aesplatform.accounts",
    "aesplatform.catalog",
    "aesplatform.curation",
    "aesplatform.annotation",
    "aesplatform.datasets",
    "aesplatform.modeling",
    "annotator_ui",
]

MIDDLEWARE = [
    "aesplatform.common.proxy.ForwardedClientAddressMiddleware",  # first: the client's address behind trusted proxies
    "django.middleware.security.SecurityMiddleware",
    "aesplatform.common.middleware.DatabaseUnavailableMiddleware",  # a database outage is a 503, not a 500 page
    "aesplatform.common.csp.CSPMiddleware",  # django-csp, the site policy built once
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]
# bench/pages.py only (never in production): each response tells its SQL statement count and time
AESP_QUERY_STATS_HEADER = env.bool("AESP_QUERY_STATS_HEADER", default=False)
if AESP_QUERY_STATS_HEADER:
    MIDDLEWARE.insert(0, "aesplatform.common.querystats.QueryStatsMiddleware")

ROOT_URLCONF = "aesplatform.urls"
WSGI_APPLICATION = "aesplatform.wsgi.application"
ASGI_APPLICATION = "aesplatform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "annotator_ui.context_processors.navigation",
            ],
        },
    },
]

_default_database_url = (
    "postgres://postgres@127.0.0.1:5432/aesplatform" if DJANGO_ENV == "test" else f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
)
DATABASES = {"default": env.db_url("DATABASE_URL", default=_default_database_url)}
# Folders created when Django starts (aesplatform.common.apps), not at import: SQLite's, the broker's, the results'.
LOCAL_FOLDERS: list[Path] = []
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    LOCAL_FOLDERS.append(Path(DATABASES["default"]["NAME"]).parent)
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=60 if PRODUCTION else 0))
# A persistent connection (CONN_MAX_AGE) that a database restart broke fails the request that uses it first: that
# request answers 503 (retryable: common/middleware.py; the annotate page and API clients retry with the same
# idempotency key), Django drops the connection and the next request reconnects. DJANGO_CONN_HEALTH_CHECKS=true
# checks each kept connection (SELECT 1) before its first use in a request instead: no 503 after a restart, at
# the price of one more database round trip on every request (Django's default is off, and so is ours).
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", env.bool("DJANGO_CONN_HEALTH_CHECKS", default=False))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout so that the web process and the embedded worker can share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "DJANGO_DB_PREPARED_STATEMENTS", default=False
):
    # Server-side parameter binding lets psycopg prepare a statement run 5 times on a connection (no parsing and
    # planning afterwards). Off by default: transaction-pooling proxies (pgbouncer) do not support it.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 5})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out username+address before the password is even checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ui:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files ship with the project (no CDN) and are served by whitenoise.
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Where media (images, thumbnails), export archives and trained checkpoints live: the local filesystem
# (MEDIA_ROOT, the default: one machine) or an S3-compatible object store (AESP_STORAGE_BACKEND=s3), which workers
# on other hosts reach without any shared folder; they keep what they read in a bounded local cache
# (aesplatform.common.objectstore). Credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY) or the machine's role; never from this file.
_STORAGE_BACKENDS = {
    "filesystem": "django.core.files.storage.FileSystemStorage",
    "s3": "storages.backends.s3.S3Storage",
}
_storage_backend = env.str("AESP_STORAGE_BACKEND", default="filesystem")
STORAGES = {
    "default": {"BACKEND": _STORAGE_BACKENDS.get(_storage_backend, _storage_backend)},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Outside production whitenoise also finds the files in the apps' static folders (no collectstatic needed, DEBUG on
# or off); in production it serves only what collectstatic put in STATIC_ROOT.
WHITENOISE_USE_FINDERS = not PRODUCTION
if STORAGES["default"]["BACKEND"] == _STORAGE_BACKENDS["s3"]:
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config as BotoConfig

    _multipart_bytes = env.int("AESP_S3_MULTIPART_BYTES", default=64 * 1024 * 1024)
    _s3_endpoint = env.str("AESP_S3_ENDPOINT_URL", default=None)
    STORAGES["default"]["OPTIONS"] = {
        "bucket_name": env.str("AESP_S3_BUCKET"),
        "endpoint_url": _s3_endpoint,
        "region_name": env.str("AESP_S3_REGION", default=None),
        "querystring_auth": True,
        "file_overwrite": True,  # keys are content-addressed or unique per job: the same key is the same bytes
        "client_config": BotoConfig(
            # botocore's "standard" retry mode: exponential backoff with jitter on throttling, 5xx and dropped
            # connections; a store unreachable for longer than the attempts last fails the job with a clear error
            # and the job is retried (see aesplatform.common.objectstore)
            retries={"max_attempts": env.int("AESP_S3_MAX_ATTEMPTS", default=5), "mode": "standard"},
            connect_timeout=env.float("AESP_S3_CONNECT_TIMEOUT_S", default=5.0),
            read_timeout=env.float("AESP_S3_READ_TIMEOUT_S", default=60.0),
            # path-style URLs for self-hosted stores (MinIO, Ceph, SeaweedFS...): their buckets have no DNS names
            s3={"addressing_style": "path" if _s3_endpoint else "auto"},
            signature_version="s3v4",
        ),
        # objects above this size are uploaded in parts of this size (S3's minimum part is 5 MiB)
        "transfer_config": TransferConfig(multipart_threshold=_multipart_bytes, multipart_chunksize=_multipart_bytes),
    }
# Workers on hosts without the media folder keep the stored files they read here (least recently used evicted).
AESP_STORAGE_CACHE_DIR = Path(env.str("AESP_STORAGE_CACHE_DIR", default=str(VAR_DIR / "cache" / "storage")))
AESP_STORAGE_CACHE_BYTES = env.int("AESP_STORAGE_CACHE_BYTES", default=20 * 1024**3)
# A job that finds the object store unreachable (after the client's own attempts) goes back to the queue and is
# tried again after AESP_STORAGE_RETRY_S, doubling each time, at most AESP_STORAGE_JOB_RETRIES times; then it fails
# with the store's message (and can be resumed). No image is ever marked broken because the store did not answer.
AESP_STORAGE_RETRY_S = env.float("AESP_STORAGE_RETRY_S", default=30.0)
AESP_STORAGE_JOB_RETRIES = env.int("AESP_STORAGE_JOB_RETRIES", default=5)
# Uploads larger than this go to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("AESP_MAX_UPLOAD_FILES", default=1000)
# JSON request bodies: refused (413) past this size before any parsing, and (400) past this nesting depth.
AESP_MAX_JSON_BODY_BYTES = env.int("AESP_MAX_JSON_BODY_BYTES", default=8 * 1024 * 1024)
AESP_MAX_JSON_DEPTH = env.int("AESP_MAX_JSON_DEPTH", default=32)

# Image import limits (bad input must fail clearly, not exhaust the machine).
AESP_IMPORT = {
    "MAX_IMAGE_PIXELS": env.int("AESP_MAX_IMAGE_PIXELS", default=89_478_485),  # Pillow's default bomb limit
    "MAX_FILE_BYTES": env.int("AESP_MAX_FILE_BYTES", default=100 * 1024 * 1024),
    "MAX_ZIP_MEMBERS": env.int("AESP_MAX_ZIP_MEMBERS", default=200_000),
    "MAX_ZIP_UNCOMPRESSED_BYTES": env.int("AESP_MAX_ZIP_UNCOMPRESSED_BYTES", default=50 * 1024**3),
    "MAX_ZIP_RATIO": env.int("AESP_MAX_ZIP_RATIO", default=200),
    "THUMBNAIL_SIZE": env.int("AESP_THUMBNAIL_SIZE", default=384),
    # Server-side folder and zip imports may only read below these roots (path traversal is refused).
    "ALLOWED_ROOTS": [Path(p) for p in env.list("AESP_IMPORT_ROOTS", default=[str(VAR_DIR / "incoming")])],
}
# Dataset exports: written below AESP_EXPORT_ROOT by default; a target_dir may also lie below AESP_EXPORT_ROOTS.
AESP_EXPORT_ROOT = Path(env.str("AESP_EXPORT_ROOT", default=str(VAR_DIR / "exports")))
AESP_EXPORT_ROOTS = [Path(p) for p in env.list("AESP_EXPORT_ROOTS", default=[])]

# CLIP filtering (curation): the default model of a new filter run and the gpu worker's tuning.
AESP_FILTER = {
    # empty: chosen by the weights at hand (aesplatform.curation.services.filter_default_model): ViT-L-14 with the
    # checkpoint below, else the small AESP-Tiny-CLIP (random weights are noise in any model; the small one is fast)
    "DEFAULT_MODEL": env.str("AESP_CLIP_MODEL", default=""),
    "DEFAULT_CHECKPOINT": env.str("AESP_CLIP_CHECKPOINT", default=""),
    # None: a run may name any absolute checkpoint path; else it must lie below one of these folders
    "CHECKPOINT_ROOTS": [Path(p) for p in env.list("AESP_CLIP_CHECKPOINT_ROOTS", default=[])] or None,
    "DEVICE": env.str("AESP_FILTER_DEVICE", default="auto"),  # auto: cuda when available
    "NUM_WORKERS": env.int("AESP_FILTER_NUM_WORKERS", default=min(8, os.cpu_count() or 1)),  # decode processes
}
# Training and pre-scoring (modeling): where training runs write, and the pre-scoring DataLoader's decode workers
# (0: decode in the task; on a GPU machine a few, the GPU outruns one decoding core).
AESP_TRAINING_ROOT = Path(env.str("AESP_TRAINING_ROOT", default=str(VAR_DIR / "training")))
AESP_PRESCORE_NUM_WORKERS = env.int("AESP_PRESCORE_NUM_WORKERS", default=0)
# The most processes one training job may ask for (torchrun on the gpu worker): its GPUs, or its CPU cores.
AESP_TRAINING_MAX_PROCESSES = env.int("AESP_TRAINING_MAX_PROCESSES", default=1)
# A filter or pre-scoring run shared by several workers (aesplatform.common.chunks): the worker that takes the run
# asks this many others (on the run's queue) to claim chunks of it beside it; 0: it scores the whole run itself.
AESP_RUN_HELPERS = env.int("AESP_RUN_HELPERS", default=0)
# Items per chunk (rounded up to whole model batches): small enough to balance the workers, large enough that
# starting a chunk (decode workers, a claim) stays small beside scoring it.
AESP_RUN_CHUNK_SIZE = env.int("AESP_RUN_CHUNK_SIZE", default=4096)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "aesplatform.common.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "aesplatform.common.pagination.DefaultPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "aesplatform.common.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HumanAes platform API",
    "DESCRIPTION": (
        "Import, filter, annotate (12-dimensional standard), export and train human-image aesthetics models."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's files ship with the project (drf-spectacular-sidecar): no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    # `<id:pk>` (aesplatform.common.converters): a 64-bit id, so clients and fuzzers know the largest one.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**63 - 1}},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Enums of fields that share a name across apps (state, kind, format, split) get explicit names; the first
    # two keep the names they had before datasets' enums joined the schema.
    "ENUM_NAME_OVERRIDES": {
        "KindEnum": "aesplatform.catalog.models.ImportKind",
        "StateEnum": "aesplatform.annotation.models.CampaignState",
        "DatasetVersionStateEnum": "aesplatform.datasets.models.DatasetState",
        "DatasetKindEnum": "aesplatform.datasets.models.DatasetKind",
        "DatasetSplitEnum": "aesplatform.datasets.models.Split",
        "ExportFormatEnum": "aesplatform.datasets.models.ExportFormat",
        "ConsensusMethodEnum": "aesplatform.annotation.models.ConsensusMethod",
    },
}

# Celery: JSON only, late acks (a killed worker's task is redelivered), results stored, two queues.
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default="redis://127.0.0.1:6379/9" if DJANGO_ENV == "test" else "filesystem://"
)
CELERY_RESULT_BACKEND = env.str(
    "CELERY_RESULT_BACKEND",
    default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else f"file://{VAR_DIR / 'celery' / 'results'}",
)
if CELERY_RESULT_BACKEND.startswith("file://"):
    LOCAL_FOLDERS.append(Path(CELERY_RESULT_BACKEND.removeprefix("file://")))
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
if CELERY_BROKER_URL.startswith("redis") and env.str("CELERY_BROKER_KEY_PREFIX", default=""):
    # Several deployments (or test runs) on one Redis: each sees only its own queues, unacked messages and pings.
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env.str("CELERY_BROKER_KEY_PREFIX")
if CELERY_BROKER_URL.startswith("filesystem"):
    _queue_dir = VAR_DIR / "celery" / "queue"  # the embedded broker is a folder both processes share
    LOCAL_FOLDERS += [_queue_dir, VAR_DIR / "celery" / "processed", VAR_DIR / "celery" / "control"]
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        {
            "data_folder_in": str(_queue_dir),
            "data_folder_out": str(_queue_dir),
            "processed_folder": str(VAR_DIR / "celery" / "processed"),
            "store_processed": False,
            # kombu's default is ./control, relative to wherever a process happens to start
            "control_folder": str(VAR_DIR / "celery" / "control"),
        }
    )
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# Nothing stays stuck (aesplatform.common.jobs): a running job's worker marks it alive every AESP_JOB_HEARTBEAT_S;
# every AESP_JOB_SWEEP_S the sweep (celery beat, aesplatform/celery.py) re-queues the jobs with no sign of life for
# AESP_JOB_STALE_S: a running job whose worker died, a queued one whose message was lost. The broker's
# visibility timeout stays long: the sweep, not a redelivery, is what takes such a job up again.
AESP_JOB_HEARTBEAT_S = env.float("AESP_JOB_HEARTBEAT_S", default=15.0)
AESP_JOB_STALE_S = env.float("AESP_JOB_STALE_S", default=60.0)
AESP_JOB_SWEEP_S = env.float("AESP_JOB_SWEEP_S", default=30.0)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=6 * 3600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=6 * 3600 + 300)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Web security (every profile; production adds HTTPS below) ---------------------------------------------------
# Content-Security-Policy header on every response (django-csp): scripts and styles only from our own static files
# (no inline script, no event-handler or style attribute), requests only to this origin, never framed. The API
# docs page (Swagger UI) uses the CSP-friendly split view and a stylesheet of ours instead of its inline <style>.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}
if env.str("AESP_CSP_REPORT_URI", default=""):
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["report-uri"] = env.str("AESP_CSP_REPORT_URI")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # no script reads it: pages put the token in the form or a data attribute
CSRF_COOKIE_SAMESITE = "Lax"

# Login rate limiting (django-axes): the form login, the admin login and the API token endpoint. After
# AESP_LOGIN_FAILURE_LIMIT failed attempts for one username from one address, that pair is locked out for
# AESP_LOGIN_COOLOFF_MINUTES (another failed attempt meanwhile starts the cool-off again); a success resets the count.
# Behind proxies the address is the client's only when AESP_TRUSTED_PROXY_COUNT says how many (common/proxy.py).
AESP_TRUSTED_PROXY_COUNT = env.int("AESP_TRUSTED_PROXY_COUNT", default=0)
AXES_ENABLED = env.bool("AESP_LOGIN_LOCKOUT", default=True)
AXES_FAILURE_LIMIT = env.int("AESP_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AESP_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "annotator_ui.views.login_locked_out"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False

if PRODUCTION:
    # Behind a TLS-terminating proxy that sets this header (and strips it from clients); empty: no proxy.
    _proxy_ssl_header = env.str("DJANGO_SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO")
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header, "https") if _proxy_ssl_header else None
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^health/$"]  # container health checks speak plain HTTP inside the network
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
