"""REST API for clients (FAB ModelRestApi + JWT): same scope, validation and audit as the UI."""

import logging

from flask import request
from flask_appbuilder.api import ModelRestApi
from flask_babel import gettext
from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from ..core.errors import DomainError, NotFound
from ..core.filters import ClientDeskInterface, ScopeFilter
from ..extensions import db
from ..organisation.services import current_user
from . import filters as list_filters
from . import services
from .models import Client
from .permissions import CLIENT_PERMISSIONS
from .schemas import ClientDetailSchema, ClientReadSchema, ClientWriteSchema

log = logging.getLogger(__name__)

# Searchable and sortable columns: no passport or date of birth (no filter oracle, R5).
SEARCH_COLUMNS = ["uid", "email", "first_name", "last_name", "full_name", "phone", "client_type", "state",
                  "country", "project_id", "desk_id", "manager_id", "status_id", "processed", "created_at"]
# The list's fast filters (app/clients/filters.py) serve the REST list too: opr = the filter's arg_name.
SEARCH_COLUMNS += [c for c in list_filters.API_SEARCH_COLUMNS if c not in SEARCH_COLUMNS and c != "custom_fields"]


class ClientApi(ModelRestApi):
    resource_name = "client"
    datamodel = ClientDeskInterface(Client)
    class_permission_name = "Clients"
    method_permission_name = {"get_list": "get", "get": "get", "info": "info", "post": "post", "put": "put"}
    allow_browser_login = False
    base_permissions = CLIENT_PERMISSIONS  # no delete: clients are never hard-deleted (CL-REC-10)
    include_route_methods = {"get_list", "get", "post", "put", "info"}
    base_filters = [["id", ScopeFilter, None]]
    base_order = ("id", "desc")
    list_columns = list(ClientReadSchema._declared_fields)
    show_columns = list(ClientDetailSchema._declared_fields)
    list_model_schema = ClientReadSchema()
    show_model_schema = ClientDetailSchema()
    search_columns = SEARCH_COLUMNS
    search_filters = {k: v for k, v in list_filters.API_SEARCH_FILTERS.items() if k in SEARCH_COLUMNS}
    order_columns = ["id", "uid", "email", "full_name", "last_name", "created_at", "updated_at", "state",
                     "country", "status_id"]
    add_columns = list(ClientWriteSchema._declared_fields)
    edit_columns = [k for k in ClientWriteSchema._declared_fields]
    add_model_schema = ClientWriteSchema()
    edit_model_schema = ClientWriteSchema(partial=True)
    max_page_size = 100

    def _handle_filters_args(self, rison_args):
        # A list value (`(col:status_id,opr:cd_in,value:!(1,2))`) means "any of": FAB would AND its items.
        return list_filters.keep_lists_whole(super()._handle_filters_args(rison_args))

    def pre_get(self, data):
        services.mask_pii(data.get("result") or {}, current_user())

    def _shown(self, client):
        return services.mask_pii(self.show_model_schema.dump(client), current_user())

    def _domain_response(self, exc):
        if isinstance(exc, NotFound):
            return self.response_404()
        messages = {k: [str(m) for m in v] for k, v in exc.field_errors.items()} or str(exc.message)
        return self.response(exc.status, message=messages)

    def _payload(self, schema):
        if not request.is_json:
            return None, self.response_400(message=gettext("The request body must be JSON."))
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return None, self.response_400(message=gettext("The request body must be a JSON object."))
        try:
            return schema.load(data), None
        except ValidationError as err:
            return None, self.response_422(message=err.messages)

    def post_headless(self):
        data, error = self._payload(self.add_model_schema)
        if error is not None:
            return error
        try:
            client = services.create_client(data, current_user())
        except DomainError as exc:
            db.session.rollback()
            return self._domain_response(exc)
        except SQLAlchemyError:
            db.session.rollback()
            log.exception("client create failed")
            return self.response(409, message=gettext("The client could not be saved (it clashes with existing "
                                                      "data)."))
        return self.response(201, id=client.id, result=self._shown(client))

    def put_headless(self, pk):
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            return self.response_404()
        data, error = self._payload(self.edit_model_schema)
        if error is not None:
            return error
        try:
            client = services.update_client(item, data, current_user())
        except DomainError as exc:
            db.session.rollback()
            return self._domain_response(exc)
        except SQLAlchemyError:
            db.session.rollback()
            log.exception("client update failed")
            return self.response(409, message=gettext("The client could not be saved (it clashes with existing "
                                                      "data)."))
        return self.response(200, result=self._shown(client))
