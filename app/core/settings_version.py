"""A counter the database bumps whenever the settings every list page reads change (triggers, see
migrations 40ccaae87a52 and ed15380e9dd9): custom fields, client statuses, projects, and each user's
saved views and column layout. The request's user loader reads it with the staff preference, so each
process keeps what it built from those tables (custom-field columns, statuses, project choices per
scope, a user's views and columns) until the counter moves: three queries fewer per list page, and a
change shows on the next request, whoever made it and however.

A second counter (row 2, migration e2099cad27a6) follows client_favourite alone: favourites change
far more often than settings, and only the favourites panel reads them.

The entries live on the application object, so two applications in one process (tests) never share
them.
"""

from itertools import chain

from flask import current_app, g, has_app_context
from sqlalchemy import BigInteger, Column, Integer, event
from sqlalchemy.orm import Session

from ..extensions import db

# Tables whose rows the cached values are built from; a trigger on each bumps the counter.
SETTINGS_TABLES = ("custom_field", "client_status", "project", "client_list_view", "client_column_layout")


class SettingsVersion(db.Model):
    __tablename__ = "settings_version"
    id = Column(Integer, primary_key=True)
    value = Column(BigInteger, nullable=False, default=0, server_default="0")


SETTINGS, FAVOURITES = 1, 2  # the counters' rows
_MAX_ENTRIES = 4096


def cached(key, build, counter=SETTINGS):
    """build()'s value, kept per process under the counter's value the request read with its user
    (else built afresh: a request without a signed-in user, a CLI command or a job)."""
    version = g.get("_cd_settings_version" if counter == SETTINGS else "_cd_favourites_version")
    if version is None:
        return build()
    entries = current_app.extensions.setdefault(f"clientdesk_settings_cache_{counter}", {})
    if entries.get("version") != version:
        entries.clear()  # every older entry is dead once the version moved
        entries["version"] = version
    if key not in entries:
        if len(entries) > _MAX_ENTRIES:  # per-user entries: a bound on a process's memory
            entries.clear()
            entries["version"] = version
        # Built after the version was read, so the value is at least as new as that version.
        entries[key] = build()
    return entries[key]


@event.listens_for(Session, "after_flush")
def _forget_versions_read_before_a_write(session, flush_context):
    """A request that changes a counted table itself reads afresh for the rest of the request (its
    version was read before the write); the next request reads the moved counter."""
    if not has_app_context():
        return
    tables = {getattr(obj, "__tablename__", None) for obj in chain(session.new, session.dirty, session.deleted)}
    if tables & set(SETTINGS_TABLES):
        g.pop("_cd_settings_version", None)
    if "client_favourite" in tables:
        g.pop("_cd_favourites_version", None)


def detached_copy(obj):
    """A transient copy of a mapped object's column values, safe to keep across requests and
    sessions (the loaded object stays in its session, untouched)."""
    mapper = db.inspect(type(obj))
    return type(obj)(**{attr.key: getattr(obj, attr.key) for attr in mapper.column_attrs})
