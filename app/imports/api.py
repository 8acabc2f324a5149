"""REST API for imports: POST a file (multipart) to start a job, GET its status (JWT, scope, can_import)."""

import json

from flask import current_app, request
from flask_appbuilder.api import BaseApi, expose, protect
from flask_babel import gettext

from ..clients.permissions import CLIENT_PERMISSIONS
from ..core.errors import DomainError, NotFound
from ..extensions import db
from ..organisation.services import current_user
from . import services


class ClientImportApi(BaseApi):
    resource_name = "clientimport"
    class_permission_name = "Clients"
    base_permissions = CLIENT_PERMISSIONS
    method_permission_name = {"post": "import", "get": "import"}
    allow_browser_login = False

    def _error(self, exc):
        db.session.rollback()
        if isinstance(exc, NotFound):
            return self.response_404()
        messages = {k: [str(m) for m in v] for k, v in exc.field_errors.items()} or str(exc.message)
        return self.response(exc.status, message=messages)

    @expose("/", methods=["POST"])
    @protect()
    def post(self):
        """Start an import: multipart `file`; optional dry_run, encoding, delimiter, project, mapping (JSON)."""
        request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]
        file = request.files.get("file")
        if file is None or not file.filename:
            return self.response_400(message=gettext("Send the file as multipart field 'file'."))
        form = request.form
        try:
            mapping = json.loads(form["mapping"]) if form.get("mapping") else None
        except ValueError:
            return self.response_400(message=gettext("The mapping must be a JSON object."))
        if mapping is not None and not isinstance(mapping, dict):
            return self.response_400(message=gettext("The mapping must be a JSON object."))
        user = current_user()
        try:
            job = services.store_upload(file.stream, file.filename, user, encoding=form.get("encoding"),
                                        delimiter=form.get("delimiter"),
                                        dry_run=form.get("dry_run") in ("1", "true", "yes"),
                                        options={"project": form["project"]} if form.get("project") else None)
            if mapping is not None:
                services.configure(job, user, mapping=mapping)
            job = services.start(job, user)
        except DomainError as exc:
            return self._error(exc)
        return self.response(201, id=job.id, result=services.status_payload(job))

    @expose("/<pk>", methods=["GET"])
    @protect()
    def get(self, pk):
        """Status and counts of an import job (404 outside the caller's jobs)."""
        try:
            job = services.get_job(current_user(), pk)
        except DomainError as exc:
            return self._error(exc)
        return self.response(200, result=services.status_payload(job))
