"""The steps of create_app(): extensions, AppBuilder, registrations and request hooks."""

import datetime as dt

from flask import current_app, g, request, session
from flask_appbuilder import AppBuilder
from flask_login import current_user, logout_user, user_logged_in, user_logged_out

from .extensions import csrf, db, migrate


def check_config(app):
    key = app.config.get("SECRET_KEY") or ""
    if app.config.get("CLIENTDESK_ENV") == "production" and len(key) < 32:
        raise RuntimeError("SECRET_KEY must be set to at least 32 random characters in production.")
    if not key:
        # Development only: a random key kept in instance/secret_key, shared by all worker processes.
        app.config["SECRET_KEY"] = _dev_secret_key()
    app.config.setdefault("JWT_SECRET_KEY", app.config["SECRET_KEY"])
    _fake_password_hash(app)


def _fake_password_hash(app):
    """FAB hashes a dummy password for unknown users (R12); the value must be a real hash made with
    FAB_PASSWORD_HASH_METHOD so both login paths cost the same. A flag (True) would reach
    check_password_hash as a bool and turn every unknown-user login into a 500."""
    value = app.config.get("AUTH_DB_FAKE_PASSWORD_HASH_CHECK")
    if isinstance(value, str) and value.count("$") >= 2:
        return
    import secrets
    from werkzeug.security import generate_password_hash
    method = app.config.get("FAB_PASSWORD_HASH_METHOD") or "scrypt"
    app.config["AUTH_DB_FAKE_PASSWORD_HASH_CHECK"] = generate_password_hash(secrets.token_hex(16), method=method)


def _dev_secret_key():
    import os
    import secrets
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "instance")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "secret_key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    with open(path) as fh:
        return fh.read().strip()


def init_extensions(app):
    # CSRFProtect must exist before add_api() so FAB exempts the JWT API blueprints (fab5-notes §8).
    csrf.init_app(app)
    from .core.bulk import json_text, json_value
    # JSON columns (custom fields, meta …) are written and read with orjson; a copy, not the config
    # class's dict
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"json_serializer": json_text, "json_deserializer": json_value,
                                               **(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})}
    db.init_app(app)
    migrate.init_app(app, db, directory=_migrations_dir())
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            _tune_sqlite(db.engine)


def _tune_sqlite(engine):
    """The embedded database serves two web workers and a job worker at once: write-ahead logging
    lets readers go on during a write, and a busy timeout makes a writer wait instead of failing
    with "database is locked"; NORMAL sync is safe under WAL (a power cut loses at most the last
    commits, never the file)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def _migrations_dir():
    import os
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")


def init_appbuilder(app):
    from . import models_index  # noqa: F401  every model registered before FAB looks at metadata
    from .security import ClientDeskSecurityManager
    from .core.views import ClientDeskIndexView

    appbuilder = AppBuilder(security_manager_class=ClientDeskSecurityManager, indexview=ClientDeskIndexView,
                            base_template="clientdesk_base.html")
    appbuilder.init_app(app, db.session)
    app.appbuilder = appbuilder


def register_all(app):
    from . import registry
    registry.register(app.appbuilder)
    _limit_api_login(app)


def _limit_api_login(app):
    """AUTH_RATE_LIMITED only covers the form login; apply the same limit to the JWT login (R11)."""
    sm = app.appbuilder.sm
    if not app.config.get("AUTH_RATE_LIMITED"):
        return
    for view in app.appbuilder.baseviews:
        if view.__class__.__name__ == "SecurityApi" and view.blueprint is not None:
            sm.limiter.limit(sm.auth_rate_limit, methods=["POST"])(view.blueprint)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": ("default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                "img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                "script-src 'self' 'nonce-{nonce}'; form-action 'self'"),
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _views_by_endpoint(app):
    views = app.extensions.get("clientdesk_views")
    if views is None:
        views = app.extensions["clientdesk_views"] = {v.endpoint: v for v in app.appbuilder.baseviews
                                                      if getattr(v, "endpoint", None)}
    return views


def _epoch_of(user_id):
    from .organisation.services import session_epoch
    try:
        return session_epoch(int(user_id))
    except (TypeError, ValueError):
        return None


def init_security_hooks(app):
    import secrets

    # FAB's templates put nonce="{{ baselib.get_nonce() }}" on every <script> when csp_nonce() exists,
    # so the CSP can allow scripts by nonce instead of 'unsafe-inline' (R19).
    app.jinja_env.globals["csp_nonce"] = lambda: g.get("csp_nonce", "")

    @app.before_request
    def _make_nonce():
        g.csp_nonce = secrets.token_urlsafe(18)

    @app.before_request
    def _idle_timeout():
        """Browser sessions end after SESSION_IDLE_MINUTES without a request, and PERMANENT_SESSION_LIFETIME
        after login however active they are (R15). Every request re-signs the cookie, so Flask's own
        max_age check alone would slide forever; the login time lives in the signed cookie."""
        if request.path.startswith("/static/") or request.path.startswith("/appbuilder/"):
            return
        limit = current_app.config.get("SESSION_IDLE_MINUTES") or 0
        lifetime = int(current_app.permanent_session_lifetime.total_seconds())
        now = int(dt.datetime.now(dt.UTC).timestamp())
        last = session.get("_seen")
        started = session.get("_started")
        if "_user_id" in session:
            # Load the user now: the same statement brings the staff preference that holds the epoch
            # (ClientDeskSecurityManager.load_user), so the check below costs no query of its own.
            current_user._get_current_object()
        if "_user_id" in session and ((limit and last and now - last > limit * 60) or
                                      (started and now - started > lifetime) or
                                      session.get("_epoch") != _epoch_of(session["_user_id"])):
            logout_user()
            session.clear()
        if "_user_id" in session:
            session["_seen"] = now
            session.setdefault("_started", now)
            session.permanent = True

    @user_logged_in.connect_via(app)
    def _session_started(sender, user, **extra):
        now = int(dt.datetime.now(dt.UTC).timestamp())
        session["_started"] = now
        session["_seen"] = now
        session["_epoch"] = _epoch_of(user.id)
        session.permanent = True

    @user_logged_out.connect_via(app)
    def _session_ended(sender, user, **extra):
        """Logout is server-side: a copied cookie of this user stops working everywhere (R15)."""
        from .organisation.services import end_all_sessions
        if user is not None and getattr(user, "id", None):
            end_all_sessions(user.id)

    @app.before_request
    def _validate_list_args():
        """FAB's MVC list orders by any `_oc_<View>` column it is given (the REST API checks order_columns):
        date_of_birth or password_hash become a sort oracle (R5) and an unknown name is a 500. Page
        arguments are integers on every list, FAB's own included."""
        if not request.args:
            return
        from flask import abort
        views = None
        for key, value in request.args.items(multi=True):
            if key.startswith("_oc_"):
                views = views or {type(v).__name__: v for v in current_app.appbuilder.baseviews}
                view = views.get(key[4:])
                allows = getattr(view, "allows_order", None)  # a view whose sortable columns change at run time
                if view is not None and not (allows(value) if allows else
                                             value in (getattr(view, "order_columns", None) or ())):
                    abort(400)
            elif key.startswith(("page_", "psize_")) and not value.isdigit():
                abort(400)

    @app.before_request
    def _guard_fab_actions():
        """The refusals of ScopedModelView.action/action_post for every view, FAB's own included (R2).

        FAB looks an action up without checking it exists (unknown name: AttributeError, a 500 reachable
        with no permission at all) and answers a refused one with a redirect that looks like success.
        """
        endpoint = request.endpoint or ""
        if not endpoint.endswith((".action", ".action_post")):
            return
        view = _views_by_endpoint(current_app).get(endpoint.rsplit(".", 1)[0])
        if view is None:
            return
        from flask import abort
        if endpoint.endswith(".action"):
            if not view.is_get_mutation_allowed():
                abort(405)
            name = (request.view_args or {}).get("name")
        else:
            name = request.form.get("action")
        action = (getattr(view, "actions", None) or {}).get(name) if name else None
        if action is None:
            abort(404)
        if not (action.single if endpoint.endswith(".action") else action.multiple):
            abort(404)  # e.g. FAB's copyrole (multiple only) iterates its argument: a 500 on the single route
        if not current_app.appbuilder.sm.has_access(view.get_action_permission_name(name),
                                                    view.class_permission_name):
            abort(404)

    @app.after_request
    def _headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value.replace("{nonce}", g.get("csp_nonce", "")))
        if current_app.config.get("PREFERRED_URL_SCHEME") == "https":
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if getattr(g, "no_store", False) or request.endpoint and (
                request.endpoint.startswith("AuthDBView") or "client" in request.endpoint.lower()):
            response.headers["Cache-Control"] = "no-store, no-cache, must-revalidate, max-age=0"
            response.headers["Pragma"] = "no-cache"
        return response

    @app.errorhandler(500)
    def _generic_error(exc):
        """Never leak database text or tracebacks (R20)."""
        from flask import jsonify, render_template_string
        from flask_babel import gettext
        db.session.rollback()
        message = gettext("Something went wrong. The error was logged; please try again.")
        if request.path.startswith("/api/"):
            return jsonify(message=message), 500
        return render_template_string("<!doctype html><title>{{ m }}</title><p>{{ m }}</p>", m=message), 500


def init_locale_hooks(app):
    """Remember a staff user's language choice and restore it at every login (CL-SET-2)."""
    from flask_babel import format_datetime

    from .organisation import services as org

    from flask_babel import get_babel

    def _user_timezone():
        user = current_app.appbuilder.sm.current_user if request else None
        if user is None:
            return None
        if "_clientdesk_tz" not in g:
            g._clientdesk_tz = org.staff_timezone(user.id)
        return g._clientdesk_tz

    get_babel(app).timezone_selector = _user_timezone

    @app.template_filter("cd_datetime")
    def _cd_datetime(value):
        """Timestamps are stored in UTC (naive) and shown in the user's locale and time zone."""
        return format_datetime(value, "medium") if value else ""
    from flask_login import user_logged_in

    @app.after_request
    def _remember_language(response):
        if request.endpoint == "LocaleView.index" and response.status_code in (200, 302):
            user = current_app.appbuilder.sm.current_user
            locale = (request.view_args or {}).get("locale")
            if user is not None and locale in current_app.config.get("LANGUAGES", {}):
                org.set_staff_locale(user.id, locale)
        return response

    @user_logged_in.connect_via(app)
    def _restore_language(sender, user, **extra):
        pref = org.staff_preference(user.id)
        if pref is not None and pref.locale:
            session["locale"] = pref.locale


def register_cli(app):
    from .cli import clientdesk
    app.cli.add_command(clientdesk)
