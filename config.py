"""ClientDesk configuration: every option comes from the environment with a typed default."""

import os
import tempfile
from datetime import timedelta

from flask_appbuilder.const import AUTH_DB

BASE_DIR = os.path.abspath(os.path.dirname(__file__))
INSTANCE_DIR = os.path.join(BASE_DIR, "instance")


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _anchored(*names):
    """FAB_ROLES matches view names with re.match, a prefix match: anchor every name."""
    return [f"^{name}$" for name in names]


# Permissions of the shipped roles (CL-ORG-4). Admin gets everything from FAB itself.
_CLIENT_READ = [["^Clients$", "can_list"], ["^Clients$", "can_show"], ["^Clients$", "can_get"],
                ["^Clients$", "can_info"], ["^Clients$", "menu_access"]]
_CLIENT_EDIT = [["^Clients$", "can_edit"], ["^Clients$", "can_put"]]
_CLIENT_ADD = [["^Clients$", "can_add"], ["^Clients$", "can_post"]]
_MANAGER_SETTINGS = _anchored("Statuses", "CustomFields", "FunnelStages", "ActionTypes")
_SETTINGS_READ = [[v, p] for v in _MANAGER_SETTINGS for p in ("can_list", "can_show", "menu_access")]
_SETTINGS_WRITE = [[v, p] for v in _MANAGER_SETTINGS for p in ("can_add", "can_edit", "can_delete")]
_LOGS = [["^AuditLogs$", "can_list"], ["^AuditLogs$", "can_show"], ["^AuditLogs$", "menu_access"],
         ["^Clients$", "can_view_logs"]]
_COMMON = [["^Settings$", "menu_access"], ["^CRM$", "menu_access"],
           ["^UserInfoEditView$", "can_this_form_get"], ["^UserInfoEditView$", "can_this_form_post"],
           ["^ResetMyPasswordView$", "can_this_form_get"], ["^ResetMyPasswordView$", "can_this_form_post"],
           ["^UserDBModelView$", "can_userinfo"], ["^UserDBModelView$", "resetmypassword"],
           ["^Preferences$", "can_edit"], ["^Preferences$", "menu_access"]]

SHIPPED_ROLES = {
    "Manager": _COMMON + _CLIENT_READ + _CLIENT_EDIT + _CLIENT_ADD + _SETTINGS_READ + _SETTINGS_WRITE + _LOGS + [
        ["^Clients$", p] for p in (
            "can_reassign", "can_bulk_edit", "can_change_project", "can_change_state", "can_import",
            "can_export", "can_create_action", "can_edit_action_type", "can_delete_action",
            "can_send_private_message", "can_view_assets", "can_edit_assets", "can_view_balance",
            "can_merge_duplicates", "can_manage_settings", "can_see_undesked", "can_manage_2fa", "can_view_pii")
    ],
    "Agent": _COMMON + _CLIENT_READ + _CLIENT_EDIT + [
        ["^Clients$", p] for p in ("can_create_action", "can_change_state", "can_manage_2fa", "can_view_pii")
    ],
    "Compliance": _COMMON + _CLIENT_READ + _LOGS + [
        ["^Clients$", p] for p in ("can_view_balance", "can_view_assets", "can_see_undesked", "can_view_pii")
    ],
    "Viewer": _COMMON + _CLIENT_READ,
}


# FAB matches built-in role permissions with re.match (a prefix match), so "can_edit" would also grant
# "can_edit_action_type" and "can_edit_assets": anchor every permission name as well as every view name.
SHIPPED_ROLES = {role: [[view, perm if perm.startswith("^") else f"^{perm}$"] for view, perm in pvms]
                 for role, pvms in SHIPPED_ROLES.items()}


class Config:
    # Core Flask
    SECRET_KEY = os.environ.get("SECRET_KEY", "")
    # Set to "production" to refuse start-up without a real SECRET_KEY.
    CLIENTDESK_ENV = os.environ.get("CLIENTDESK_ENV", "development")
    # SQLAlchemy URL; defaults to an embedded SQLite file under instance/.
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "DATABASE_URL", "sqlite:///" + os.path.join(INSTANCE_DIR, "clientdesk.db"))
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    # Redis for RQ jobs and shared rate-limit counters; unset = jobs run inline.
    REDIS_URL = os.environ.get("REDIS_URL", "")

    # Flask-AppBuilder
    APP_NAME = "ClientDesk"
    APP_THEME = ""
    AUTH_TYPE = AUTH_DB
    AUTH_ROLE_ADMIN = "Admin"
    AUTH_ROLE_PUBLIC = "Public"
    AUTH_USER_REGISTRATION = False
    FAB_ROLES = SHIPPED_ROLES
    # Alembic owns the schema and `flask clientdesk init-security` owns permissions (deploy time).
    FAB_CREATE_DB = env_bool("FAB_CREATE_DB", False)
    FAB_UPDATE_PERMS = env_bool("FAB_UPDATE_PERMS", False)
    FAB_ADD_SECURITY_API = False
    FAB_API_SWAGGER_UI = True  # also gates /api/v1/_openapi, which stays behind JWT
    FAB_API_SHOW_STACKTRACE = False
    FAB_API_MAX_PAGE_SIZE = 100
    FAB_PASSWORD_HASH_METHOD = os.environ.get("FAB_PASSWORD_HASH_METHOD", "scrypt")
    # A real hash made with FAB_PASSWORD_HASH_METHOD is generated at start-up (setup._fake_password_hash).
    AUTH_DB_FAKE_PASSWORD_HASH_CHECK = True
    FAB_SAFE_REDIRECT_HOSTS = [h for h in os.environ.get("SAFE_HOSTS", "").split(",") if h]
    # Flask 3.1: refuse requests for any other Host (R13, CVE-2025-32962 class); unset = any host (dev).
    TRUSTED_HOSTS = FAB_SAFE_REDIRECT_HOSTS or None
    FAB_ALLOW_GET_UNSAFE_MUTATIONS = False

    # Languages (CL-SET-2); an absolute path, or flask-babel ignores the root-level catalogs.
    LANGUAGES = {
        "en": {"flag": "gb", "name": "English"},
        "es": {"flag": "es", "name": "Español"},
        "ru": {"flag": "ru", "name": "Русский"},
    }
    BABEL_DEFAULT_LOCALE = "en"
    BABEL_TRANSLATION_DIRECTORIES = os.path.join(BASE_DIR, "translations")
    BABEL_DEFAULT_TIMEZONE = "UTC"

    # Session and cookies (R14, R15)
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)  # True behind HTTPS
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    PERMANENT_SESSION_LIFETIME = timedelta(hours=8)
    # Minutes of inactivity after which a browser session must log in again.
    SESSION_IDLE_MINUTES = env_int("SESSION_IDLE_MINUTES", 30)
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=15)
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(hours=12)

    # CSRF (registered globally in create_app)
    WTF_CSRF_ENABLED = True
    WTF_CSRF_TIME_LIMIT = None

    # Rate limiting (R11): both the form login and the API login.
    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    AUTH_RATE_LIMITED = True
    AUTH_RATE_LIMIT = os.environ.get("AUTH_RATE_LIMIT", "10 per minute")
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI") or os.environ.get("REDIS_URL") or "memory://"
    RATELIMIT_HEADERS_ENABLED = False

    # Private files (icons, imports, exports): outside the web root; empty = instance/uploads.
    PRIVATE_UPLOAD_FOLDER = os.environ.get("PRIVATE_UPLOAD_FOLDER", "")

    # Request size
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 25 * 1024 * 1024)

    # Security headers (R19); HSTS only when served over HTTPS.
    PREFERRED_URL_SCHEME = os.environ.get("PREFERRED_URL_SCHEME", "http")

    # Import / export (CL-IO). Uploaded files live here, outside the web root, under uuid4 names.
    IMPORT_FOLDER = os.environ.get("IMPORT_FOLDER", os.path.join(INSTANCE_DIR, "uploads", "imports"))
    # Largest accepted import file (the import routes allow this instead of MAX_CONTENT_LENGTH).
    IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 512 * 1024 * 1024)
    # Rows validated and committed per transaction (the resume checkpoint granularity).
    IMPORT_CHUNK_SIZE = env_int("IMPORT_CHUNK_SIZE", 5000)
    # Error/notice rows kept per job for the downloadable report (counts stay exact beyond it).
    IMPORT_MAX_REPORTED_ROWS = env_int("IMPORT_MAX_REPORTED_ROWS", 100_000)
    # PostgreSQL: an import that added at least this many clients ends with VACUUM (ANALYZE) of the
    # client and tag tables (fresh statistics for the list's plans, new pages marked all-visible).
    IMPORT_ANALYZE_MIN_ROWS = env_int("IMPORT_ANALYZE_MIN_ROWS", 20_000)
    # PostgreSQL: write the chunks from writer threads while the next chunks are validated (the
    # Python work and PostgreSQL's index maintenance overlap on two cores). Off: chunk by chunk.
    IMPORT_PIPELINE = env_bool("IMPORT_PIPELINE", True)
    # ... with this many writer threads (and PostgreSQL backends) taking the chunks in turn.
    IMPORT_WRITERS = env_int("IMPORT_WRITERS", 2)
    # Files of at least this many rows get a helper process that normalises the next chunk's phone
    # numbers while a chunk is validated (0: never; small files do not repay its start-up).
    IMPORT_HELPER_MIN_ROWS = env_int("IMPORT_HELPER_MIN_ROWS", 20_000)
    # Rows of a repeated key wait (in memory) for the last row of their key, so that all of them
    # are processed in one chunk and a re-run of the file changes nothing; at most this many wait.
    IMPORT_MAX_HELD_ROWS = env_int("IMPORT_MAX_HELD_ROWS", 50_000)
    # An XLSX import's first pass keeps the rows it read as CSV, in a nameless temporary file in
    # IMPORT_FOLDER, for the run's pass (parsing a sheet's XML again costs 5-10 s per 100k rows);
    # past this many bytes (long shared strings repeated in many cells) the spool is dropped and the
    # sheet read again. 0: never spool.
    IMPORT_SPOOL_MAX_BYTES = env_int("IMPORT_SPOOL_MAX_BYTES", 1024 ** 3)
    # RQ: queue name, per-job timeout (s), retry delays (s) and how long failed jobs stay in Redis.
    JOB_QUEUE = os.environ.get("JOB_QUEUE", "clientdesk")
    JOB_TIMEOUT = env_int("JOB_TIMEOUT", 3600)
    JOB_RETRY_INTERVALS = [int(x) for x in os.environ.get("JOB_RETRY_INTERVALS", "10,60,300").split(",") if x]
    JOB_FAILURE_TTL = env_int("JOB_FAILURE_TTL", 24 * 3600)
    # Prefix of RQ job ids, for several ClientDesk databases sharing one Redis.
    JOB_ID_PREFIX = os.environ.get("JOB_ID_PREFIX", "")
    # False: jobs go through RQ (serializer, retries) but run synchronously in the caller (tests).
    JOB_ASYNC = env_bool("JOB_ASYNC", True)
    # Without Redis: jobs run in a background thread of the web process (not in the request, where
    # gunicorn's timeout would stop a long import); off, they run inline in the call (tests).
    JOB_LOCAL_THREAD = env_bool("JOB_LOCAL_THREAD", True)
    # ... and while idle that thread resumes, every this many seconds, imports whose heartbeat is
    # older than JOB_STALE_SECONDS (their process died).
    JOB_LOCAL_RESUME_SECONDS = env_int("JOB_LOCAL_RESUME_SECONDS", 60)
    JOB_STALE_SECONDS = env_int("JOB_STALE_SECONDS", 900)
    # RQ workers run their maintenance (registry clean-up, and resuming imports whose heartbeat is
    # older than JOB_STALE_SECONDS while RQ holds no live job for them) at start and this often.
    JOB_RECONCILE_SECONDS = env_int("JOB_RECONCILE_SECONDS", 300)
    # Exports with more rows than this run as a background job instead of streaming in the request.
    EXPORT_INLINE_MAX_ROWS = env_int("EXPORT_INLINE_MAX_ROWS", 50_000)
    EXPORT_FOLDER = os.environ.get("EXPORT_FOLDER", os.path.join(INSTANCE_DIR, "uploads", "exports"))
    # Finished export files hold client data: deleted this many hours after they were written
    # (checked whenever an export job starts, and by `flask clientdesk purge-exports` from cron).
    EXPORT_KEEP_HOURS = env_int("EXPORT_KEEP_HOURS", 24)

    # Domain defaults
    CLIENT_UID_MIN_DIGITS = 5
    LIST_PAGE_SIZE = 25


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret-key-not-for-production-0123456789"
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL", "sqlite://")
    SQLALCHEMY_ENGINE_OPTIONS = {}
    REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
    IMPORT_FOLDER = os.environ.get("TEST_IMPORT_FOLDER") or os.path.join(tempfile.gettempdir(),
                                                                         "clientdesk-test-imports")
    EXPORT_FOLDER = os.environ.get("TEST_EXPORT_FOLDER") or os.path.join(tempfile.gettempdir(),
                                                                         "clientdesk-test-exports")
    JOB_RETRY_INTERVALS = [0]
    JOB_ASYNC = False
    JOB_LOCAL_THREAD = False  # inline, so a test reads the finished job (tests of the thread turn it on)
    JOB_ID_PREFIX = f"test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"
    FAB_PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
    WTF_CSRF_ENABLED = False
    RATELIMIT_ENABLED = False
    RATELIMIT_STORAGE_URI = "memory://"
    SERVER_NAME = None
    PRIVATE_UPLOAD_FOLDER = os.environ.get("PRIVATE_UPLOAD_FOLDER") or os.path.join(
        tempfile.gettempdir(), f"clientdesk-test-uploads-{os.getpid()}")
