"""Memos for hot paths of every page that Flask-Babel and FAB recompute on each call.

Found by profiling the client list at one million clients (bench/list_bench.py): with the queries
down to a few milliseconds, a page spent about a fifth of its time finding the translations object
again for each of its ~350 strings, FAB rebuilt its per-column filter table three times per request
and rendered its whole navbar (a has_access check per entry). Each memo keeps the library's
behaviour: translations follow the request's locale (a `force_locale` or `refresh` gives a new
Locale object and so a new lookup), the filter tables are built from the same converter and
columns with fresh lists each time, and the navbar is keyed by everything it shows.
"""

import weakref
from types import SimpleNamespace

from flask import request_started
from flask.globals import _cv_app
from flask_appbuilder.models.filters import Filters
import flask_babel
from flask_babel import Domain, get_babel


def _translations_memo(original):
    def get_translations(self):
        app_ctx = _cv_app.get(None)
        if app_ctx is None:
            return original(self)
        ns = app_ctx.g.__dict__.get("_flask_babel")
        locale = getattr(ns, "babel_locale", None) if ns is not None else None
        memo = getattr(ns, "_cd_translations", None) if locale is not None else None
        if memo is not None and memo[0] is locale and memo[1] is self:
            return memo[2]
        translations = original(self)
        ns = app_ctx.g.__dict__.get("_flask_babel")
        locale = getattr(ns, "babel_locale", None) if ns is not None else None
        if locale is not None:
            ns._cd_translations = (locale, self, translations)
        return translations
    get_translations._cd_original = original
    return get_translations


def _filters_memo(original):
    tables = weakref.WeakKeyDictionary()  # datamodel -> {(converter, columns): {column: [filters]}}

    def _get_filters(self, cols):
        per_model = tables.setdefault(self.datamodel, {})
        key = (self.filter_converter, tuple(cols))
        table = per_model.get(key)
        if table is None:
            table = per_model[key] = original(self, cols)
        # fresh lists: Filters.__init__ extends the search lists in place
        return {col: list(found) for col, found in table.items()}
    _get_filters._cd_original = original
    return _get_filters


# Per-request memos kept in g (app.security, organisation.services). Cleared when a request starts,
# so a test that holds one application context across several requests never sees an older answer.
REQUEST_MEMOS = ("_cd_has_access", "_cd_role_permissions", "_cd_preferences", "_cd_security_version",
                 "_cd_settings_version", "_cd_favourites_version")


def _clear_request_memos(sender, **extra):
    app_ctx = _cv_app.get(None)
    if app_ctx is not None:
        for name in REQUEST_MEMOS:
            app_ctx.g.__dict__.pop(name, None)


def _domain():
    """flask_babel.get_domain without its three context lookups: the request's domain, else the app's."""
    app_ctx = _cv_app.get(None)
    if app_ctx is None:
        return Domain()  # as Flask-Babel: no translations outside an application context
    ns = app_ctx.g.__dict__.get("_flask_babel")
    domain = getattr(ns, "babel_domain", None)
    if domain is None:
        if ns is None:
            ns = app_ctx.g._flask_babel = SimpleNamespace()  # what flask_babel keeps per context
        domain = ns.babel_domain = get_babel().instance.domain_instance
    return domain


def install(app):
    request_started.connect(_clear_request_memos, app)
    app.jinja_env.globals["cd_navbar"] = navbar
    app.jinja_env.globals["cd_fragment"] = fragment
    if not hasattr(Domain.get_translations, "_cd_original"):
        Domain.get_translations = _translations_memo(Domain.get_translations)
    if not hasattr(Filters._get_filters, "_cd_original"):
        Filters._get_filters = _filters_memo(Filters._get_filters)

    # flask_babel.gettext and the lazy strings call the module's get_domain() per string; the
    # template callables too (three context lookups each).
    if flask_babel.get_domain is not _domain:
        flask_babel.get_domain = _domain
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _domain().get_translations().ugettext(s),
        ngettext=lambda s, p, n: _domain().get_translations().ungettext(s, p, n),
        pgettext=lambda c, s: _domain().get_translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _domain().get_translations().unpgettext(c, s, p, n),
        newstyle=True,
    )


# --------------------------------------------------------------------------- the navigation bar
# FAB renders its navbar on every page: the whole menu, each entry checked with has_access, each
# label translated (about a tenth of a list page's time). Its HTML depends only on who is signed in,
# the language and what their roles may see, so it is kept per process under exactly that key.
# A change to a role's permissions changes the key on the next request; nothing goes stale.

_NAVBAR_CACHE = {}
_NAVBAR_CACHE_MAX = 512


def _navbar_key(user):
    from flask import current_app, session
    from flask_babel import get_locale
    sm = current_app.appbuilder.sm
    roles = sm.get_user_roles(user)
    db_role_ids = tuple(sorted(r.id for r in roles if r.name not in sm.builtin_roles))
    pairs = sm.role_permission_pairs(db_role_ids) if db_role_ids else frozenset()
    return (user.id, user.get_full_name(), tuple(sorted(r.name for r in roles)), pairs,
            str(get_locale()), session.get("locale"))


def navbar():
    """The FAB navbar's HTML for this request (rendered once per key and process)."""
    from flask import current_app, g, render_template
    from markupsafe import Markup
    user = g.get("user")

    def render():
        return Markup(render_template("appbuilder/navbar.html", appbuilder=current_app.appbuilder))  # noqa: S704 (autoescaped template output)
    if user is None or not getattr(user, "is_authenticated", False):
        return render()
    key = _navbar_key(user)
    html = _NAVBAR_CACHE.get(key)
    if html is None:
        if len(_NAVBAR_CACHE) >= _NAVBAR_CACHE_MAX:
            _NAVBAR_CACHE.clear()
        html = _NAVBAR_CACHE[key] = render()
    return html


# --------------------------------------------------------------------------- static fragments
# Parts of a page whose HTML depends only on a few flags and the language (the list's bulk forms)
# are rendered once per process for each; the CSRF token, the one per-request value, is put in.

_FRAGMENTS = {}
_FRAGMENTS_MAX = 256
CSRF_MARK = "cd-csrf-token-placeholder"


def fragment(template, key, **context):
    """`template` rendered with `context`, kept per (template, key, language, script root); the
    template writes {{ csrf_mark }} where the request's CSRF token goes. `key` must determine
    everything else the template reads."""
    from flask import render_template, request
    from flask_babel import get_locale
    from flask_wtf.csrf import generate_csrf
    from markupsafe import Markup, escape
    cache_key = (template, repr(key), str(get_locale()), request.script_root)
    html = _FRAGMENTS.get(cache_key)
    if html is None:
        if len(_FRAGMENTS) >= _FRAGMENTS_MAX:
            _FRAGMENTS.clear()
        html = _FRAGMENTS[cache_key] = render_template(template, csrf_mark=CSRF_MARK, **context)
    return Markup(html.replace(CSRF_MARK, str(escape(generate_csrf()))))  # noqa: S704 (autoescaped template output)
