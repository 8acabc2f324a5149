"""Shared FAB filters and the data interface every ClientDesk view and API uses.

- ScopeFilter wraps the organisation scope function for `base_filters`.
- Text filters are literal and case-insensitive (FAB's own do not escape % and _).
- ClientDeskInterface swaps the text filters in and avoids per-row relation queries.
"""

from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.filters import (FilterEqual, FilterGreater, FilterNotEqual, FilterSmaller,
                                                  SQLAFilterConverter, get_field_setup_query)
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_babel import lazy_gettext as _l


def _single(value):
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def _with_companion(query, flt, value):
    """A text whose model names an indexed companion (Client.contains_companion: one trigram index
    over the three names) is also tested through it: any text the column's test matches contains
    `value`, so the companion's contains-test changes no result and lets PostgreSQL use its index."""
    companion = getattr(flt.model, "contains_companion", None)
    expression = companion(flt.column_name) if companion is not None else None
    return query.filter(expression.icontains(value, autoescape=True)) if expression is not None else query


class FilterContainsLiteral(BaseFilter):
    name = _l("Contains")
    arg_name = "ctl"

    def apply(self, query, value):
        query, field = get_field_setup_query(query, self.model, self.column_name)
        value = _single(value)
        return _with_companion(query, self, value).filter(field.icontains(value, autoescape=True)) if value else query


class FilterStartsWithLiteral(BaseFilter):
    name = _l("Starts with")
    arg_name = "swl"

    def apply(self, query, value):
        query, field = get_field_setup_query(query, self.model, self.column_name)
        value = _single(value)
        return _with_companion(query, self, value).filter(field.istartswith(value, autoescape=True)) if value else query


class FilterEndsWithLiteral(BaseFilter):
    name = _l("Ends with")
    arg_name = "ewl"

    def apply(self, query, value):
        query, field = get_field_setup_query(query, self.model, self.column_name)
        value = _single(value)
        return _with_companion(query, self, value).filter(field.iendswith(value, autoescape=True)) if value else query


_TEXT = [FilterContainsLiteral, FilterStartsWithLiteral, FilterEndsWithLiteral, FilterEqual, FilterNotEqual]
_NUMBER = [FilterEqual, FilterGreater, FilterSmaller, FilterNotEqual]


class ClientDeskFilterConverter(SQLAFilterConverter):
    conversion_table = tuple(
        (c[0], _TEXT) if c[0] in ("is_text", "is_string") else c
        for c in SQLAFilterConverter.conversion_table)


class ClientDeskInterface(SQLAInterface):
    filter_converter_class = ClientDeskFilterConverter


class ScopeFilter(BaseFilter):
    """base_filters entry: only rows of clients inside the current user's scope.

    Works for the client table and any table with project_id/desk_id columns; other tables
    pass `scope_via` (a relationship path to a client) by subclassing.
    """

    name = _l("In my scope")
    arg_name = None

    def apply(self, query, value):
        from ..organisation.services import client_scope_clause, current_user
        return query.filter(client_scope_clause(self.model, current_user()))


class ClientScopeViaFilter(BaseFilter):
    """base_filters entry for rows that hang off a client through `client_id`."""

    name = _l("In my scope")
    arg_name = None

    def apply(self, query, value):
        from ..clients.models import Client
        from ..organisation.services import client_scope_clause, current_user
        from sqlalchemy import select
        visible = select(Client.id).where(client_scope_clause(Client, current_user()))
        return query.filter(getattr(self.model, self.column_name).in_(visible))


class ProjectScopeFilter(BaseFilter):
    """base_filters entry for projects (and desks via project_id): only the user's projects."""

    name = _l("In my scope")
    arg_name = None

    def apply(self, query, value):
        from ..organisation.services import current_user, scope_for
        scope = scope_for(current_user())
        if scope.all_projects:
            return query
        return query.filter(getattr(self.model, self.column_name).in_(sorted(scope.project_ids or ())))
