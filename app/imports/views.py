"""Import and export screens (CL-IO): upload → preview + mapping → dry run / start → live progress.

Permissions: `can_import` / `can_export` on "Clients". A job is visible to its owner only
(administrators: all); anything else answers 404.
"""

import csv
import io
import os
import tempfile

from flask import Response, abort, flash, g, jsonify, redirect, request, send_file, stream_with_context, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext, lazy_gettext as _l

from ..clients.permissions import CLIENT_PERMISSIONS
from ..core.errors import DomainError, NotFound
from ..extensions import db
from . import exports, fields, parsing, services

ENCODING_CHOICES = [("", _l("Detect")), ("utf-8", "UTF-8"), ("utf-8-sig", "UTF-8 (BOM)"), ("cp1252", "Windows-1252"),
                    ("cp1251", "Windows-1251"), ("latin-1", "Latin-1")]
DELIMITER_CHOICES = [("", _l("Detect")), (",", _l("Comma")), (";", _l("Semicolon")), ("tab", _l("Tab")),
                     ("|", _l("Vertical bar"))]


def _job_or_404(pk):
    try:
        return services.get_job(g.user, pk)
    except NotFound:
        abort(404)


def _flash_domain(exc):
    db.session.rollback()
    messages = [str(m) for msgs in exc.field_errors.values() for m in msgs] or [str(exc.message)]
    for m in messages:
        flash(m, "danger")


def error_report_lines(job):
    """The error report as CSV text chunks: line, kind, reason, then the original cells (neutralised)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([gettext("Line"), gettext("Kind"), gettext("Reason")] + list(job.headers or []))
    yield buf.getvalue()
    n = 0
    for line, kind, reason, raw in services.report_rows(job):
        buf.seek(0)
        buf.truncate()
        writer.writerow([line, kind, exports.neutralise(reason)] + [exports.neutralise(c) for c in (raw or [])])
        n += 1
        yield buf.getvalue()


def _configure_from_form(job, form):
    """Apply the mapping screen's choices (map_<column>, encoding, delimiter, dry run) to the job."""
    mapping = {k[4:]: v for k, v in form.items() if k.startswith("map_")}
    services.configure(job, g.user, mapping=mapping, encoding=form.get("encoding") or None,
                       delimiter=form.get("delimiter") or None, dry_run=form.get("dry_run") == "1")


class ClientImportView(BaseView):
    route_base = "/clients/import"
    class_permission_name = "Clients"
    base_permissions = CLIENT_PERMISSIONS
    method_permission_name = {"index": "import", "upload": "import", "job": "import", "configure": "import",
                              "status": "import", "report": "import", "cancel": "import",
                              "save_mapping": "import", "apply_mapping": "import", "delete_mapping": "import",
                              "rename_mapping": "import"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        jobs = db.session.scalars(services.jobs_query(g.user).limit(20)).all()
        return self.render_template("imports/index.html", jobs=jobs, encodings=ENCODING_CHOICES,
                                    delimiters=DELIMITER_CHOICES, saved_mappings=services.list_mappings(g.user),
                                    title=gettext("Import clients"))

    @expose("/upload", methods=["POST"])
    @has_access
    def upload(self):
        from flask import current_app
        request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]  # this route only
        file = request.files.get("file")
        if file is None or not file.filename:
            flash(gettext("Choose a CSV or XLSX file."), "danger")
            return redirect(url_for(".index"))
        try:
            job = services.store_upload(file.stream, file.filename, g.user, encoding=request.form.get("encoding"),
                                        delimiter=request.form.get("delimiter"))
        except DomainError as exc:
            _flash_domain(exc)
            return redirect(url_for(".index"))
        return redirect(url_for(".job", pk=job.id))

    @expose("/job/<pk>")
    @has_access
    def job(self, pk):
        job = _job_or_404(pk)
        headers, rows = [], []
        if job.status == "uploaded":
            try:
                headers, rows = services.preview(job)
            except DomainError as exc:
                _flash_domain(exc)
        return self.render_template("imports/job.html", job=job, headers=headers or job.headers, rows=rows,
                                    choices=fields.mapping_choices(), encodings=ENCODING_CHOICES,
                                    delimiters=DELIMITER_CHOICES, status=services.status_payload(job),
                                    saved_mappings=services.list_mappings(g.user),
                                    title=gettext("Import %(name)s", name=job.original_name))

    @expose("/job/<pk>/configure", methods=["POST"])
    @has_access
    def configure(self, pk):
        job = _job_or_404(pk)
        form = request.form
        try:
            _configure_from_form(job, form)
            if form.get("action") == "start":
                services.start(job, g.user)
        except DomainError as exc:
            _flash_domain(exc)
        return redirect(url_for(".job", pk=pk))

    @expose("/job/<pk>/mapping/save", methods=["POST"])
    @has_access
    def save_mapping(self, pk):
        """The mapping form's "Save this mapping as…": take the screen's choices, then save them under a name."""
        job = _job_or_404(pk)
        try:
            if job.status == "uploaded":
                _configure_from_form(job, request.form)
            saved = services.save_mapping(g.user, job, request.form.get("mapping_name"))
            flash(gettext("Mapping “%(name)s” saved.", name=saved.name), "success")
        except DomainError as exc:
            _flash_domain(exc)
        return redirect(url_for(".job", pk=pk))

    @expose("/job/<pk>/mapping/apply", methods=["POST"])
    @has_access
    def apply_mapping(self, pk):
        job = _job_or_404(pk)
        try:
            matched = services.apply_mapping(g.user, job, request.form.get("mapping_id"))
        except NotFound:
            abort(404)
        except DomainError as exc:
            _flash_domain(exc)
        else:
            flash(gettext("Saved mapping applied: %(matched)d of %(total)d columns matched.",
                          matched=len(matched), total=len(job.headers or [])), "info")
        return redirect(url_for(".job", pk=pk))

    @expose("/mappings/rename", methods=["POST"])
    @has_access
    def rename_mapping(self):
        try:
            renamed = services.rename_mapping(g.user, request.form.get("mapping_id"), request.form.get("mapping_name"))
        except NotFound:
            abort(404)
        except DomainError as exc:
            _flash_domain(exc)
        else:
            flash(gettext("Mapping renamed to “%(name)s”.", name=renamed.name), "success")
        return redirect(url_for(".index"))

    @expose("/mappings/delete", methods=["POST"])
    @has_access
    def delete_mapping(self):
        try:
            services.delete_mapping(g.user, request.form.get("mapping_id"))
        except NotFound:
            abort(404)
        flash(gettext("Saved mapping deleted."), "success")
        job = request.form.get("job", "")
        return redirect(url_for(".job", pk=int(job)) if job.isascii() and job.isdigit() else url_for(".index"))

    @expose("/job/<pk>/cancel", methods=["POST"])
    @has_access
    def cancel(self, pk):
        services.request_cancel(_job_or_404(pk))
        return redirect(url_for(".job", pk=pk))

    @expose("/job/<pk>/status.json")
    @has_access
    def status(self, pk):
        return jsonify(services.status_payload(_job_or_404(pk)))

    @expose("/job/<pk>/report.csv")
    @has_access
    def report(self, pk):
        job = _job_or_404(pk)
        name = f"import_{job.id}_report.csv"
        return Response(stream_with_context(error_report_lines(job)), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-store"})


class ClientExportView(BaseView):
    route_base = "/clients/export"
    class_permission_name = "Clients"
    base_permissions = CLIENT_PERMISSIONS
    method_permission_name = {"export": "export", "export_job": "export", "export_job_status": "export",
                              "export_job_download": "export"}
    default_view = "export"

    @expose("/")
    @has_access
    def export(self):
        """?q=<search>&ids=1&ids=2&columns=email&columns=firstName&fmt=csv|xlsx&bom=1"""
        ids = [i for i in request.args.getlist("ids") + (request.args.get("ids_csv") or "").split(",") if i]
        if any(not i.strip().isdigit() for i in ids):
            abort(400)
        columns = request.args.getlist("columns")
        if not columns and request.args.getlist("list_columns"):
            columns = exports.columns_from_list(request.args.getlist("list_columns"))
        req = exports.ExportRequest(q=request.args.get("q", ""), ids=[int(i) for i in ids], columns=columns,
                                    args=_list_args(request.args),
                                    fmt="xlsx" if request.args.get("fmt") == "xlsx" else "csv",
                                    bom=request.args.get("bom") == "1")
        from flask import current_app
        if exports.scoped_count(g.user, req) > current_app.config["EXPORT_INLINE_MAX_ROWS"]:
            job = exports.start_export_job(g.user, req)
            return redirect(url_for(".export_job", pk=job.id))
        name = exports.export_filename(req.fmt)
        headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
                   "X-Content-Type-Options": "nosniff"}
        if req.fmt == "xlsx":
            fd, path = tempfile.mkstemp(suffix=".xlsx")
            os.close(fd)
            try:
                exports.write_xlsx(g.user, req, path)
                data = open(path, "rb")
            finally:
                os.remove(path)  # the open handle keeps the data readable (POSIX)
            return send_file(data, as_attachment=True, download_name=name,
                             mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        user = g.user
        return Response(stream_with_context(exports.stream_csv(user, req)), mimetype="text/csv; charset=utf-8",
                        headers=headers)

    @expose("/job/<int:pk>")
    @has_access
    def export_job(self, pk):
        """A large export running in the background: its status, then the download link."""
        job = _export_job_or_404(pk)
        return self.render_template("imports/export_job.html", job=job,
                                    status=exports.export_status_payload(job), title=gettext("Client export"))

    @expose("/job/<int:pk>/status")
    @has_access
    def export_job_status(self, pk):
        return jsonify(exports.export_status_payload(_export_job_or_404(pk)))

    @expose("/job/<int:pk>/download")
    @has_access
    def export_job_download(self, pk):
        job = _export_job_or_404(pk)
        path = exports.export_path(job)
        if job.status != "done" or not path or not os.path.isfile(path):
            abort(404)
        mimetype = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if job.fmt == "xlsx"
                    else "text/csv; charset=utf-8")
        response = send_file(path, as_attachment=True, download_name=job.download_name, mimetype=mimetype,
                             max_age=0)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _export_job_or_404(pk):
    job = exports.get_export_job(g.user, pk)
    if job is None:
        abort(404)
    return job


# Export-only parameters; every other argument is the clients list's own (filters, tab, search).
_EXPORT_PARAMS = {"ids", "ids_csv", "columns", "list_columns", "fmt", "bom"}


def _list_args(args):
    """The list arguments carried by the export link, or {} when there are none (plain export)."""
    from werkzeug.datastructures import MultiDict
    kept = MultiDict([(k, v) for k, v in args.items(multi=True) if k not in _EXPORT_PARAMS])
    return kept if any(k != "q" for k in kept) else {}


_ = parsing  # the views offer the parser's choices; keep the module import explicit
