"""View plumbing shared by every ClientDesk screen.

ScopedModelView closes the FAB routes that skip base_filters (actions, downloads) and
answers 404 for anything outside the user's scope. ServiceFormMixin routes add/edit
through a service function and shows domain errors on the form, keeping what was typed.
"""

import logging

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import IndexView, ModelView, expose
from flask_babel import gettext, lazy_gettext as _l
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..extensions import db
from .errors import DomainError, NotFound

log = logging.getLogger(__name__)


class ClientDeskIndexView(IndexView):
    """The home page goes straight to the clients list for signed-in users."""

    @expose("/")
    def index(self):
        user = self.appbuilder.sm.current_user
        if user is not None:
            return redirect(url_for("ClientModelView.list"))
        return redirect(url_for("AuthDBView.login"))


def form_field_errors(form, errors, shown_elsewhere=("meta",)):
    """Attach service errors to WTForms fields; returns the messages that matched no field.

    Errors for keys the template shows itself (the meta editor) go to g.form_extra_errors.
    """
    leftovers = []
    g.form_extra_errors = {}
    for key, messages in errors.items():
        field = getattr(form, key, None)
        if field is None:
            if key in shown_elsewhere:
                g.form_extra_errors[key] = [str(m) for m in messages]
            else:
                leftovers.extend(f"{key}: {m}" for m in messages)
            continue
        field.errors = list(field.errors or []) + [str(m) for m in messages]
    return leftovers


class ScopedModelView(ModelView):
    """ModelView with FAB's unscoped routes closed (fab5-notes §2, security R2/R9)."""

    # Subclasses that are not client-owned keep FAB's default behaviour for items.
    page_size = 25

    def _get_scoped(self, pk):
        pk = self._deserialize_pk_if_composite(pk)
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            abort(404)
        return item

    @expose("/action/<string:name>/<pk>", methods=["GET", "POST"])
    def action(self, name, pk):
        if not self.is_get_mutation_allowed():
            abort(405)
        if name not in self.actions:
            abort(404)
        permission_name = self.get_action_permission_name(name)
        if not self.appbuilder.sm.has_access(permission_name, self.class_permission_name):
            abort(404)
        item = self._get_scoped(pk)
        return self.actions.get(name).func(item)

    @expose("/action_post", methods=["POST"])
    def action_post(self):
        name = request.form.get("action", "")
        if name not in self.actions:
            abort(404)
        permission_name = self.get_action_permission_name(name)
        if not self.appbuilder.sm.has_access(permission_name, self.class_permission_name):
            abort(404)
        pks = request.form.getlist("rowid")
        items = []
        for pk in pks:
            item = self.datamodel.get(self._deserialize_pk_if_composite(pk), self._base_filters)
            if item is None:
                abort(404)  # one foreign id refuses the whole batch, changing nothing
            items.append(item)
        return self.actions.get(name).func(items)

    @expose("/download/<string:filename>")
    def download(self, filename):
        """FAB serves any file in UPLOAD_FOLDER here without a scope check; ClientDesk does not use it."""
        abort(404)

    def _list(self, **kwargs):
        # A non-numeric page or page size answers a clean page, not a 500 (fab5-notes §2).
        for key in list(request.args):
            if key.startswith(("page_", "psize_")):
                value = request.args.get(key, "")
                if not value.lstrip("-").isdigit() or int(value) < 0 or (
                        key.startswith("psize_") and int(value) > 100):
                    abort(400)
        return super()._list(**kwargs)


class ServiceFormMixin:
    """Add/edit through services: `service_create(data)` and `service_update(item, data)`.

    Forms are plain WTForms whose field names equal the service keys, so a domain
    ValidationFailed lands on the right field and the user keeps what they typed.
    """

    add_row_message = _l("Saved.")
    edit_row_message = _l("Changes saved.")

    def form_to_data(self, form, item=None):
        return {name: field.data for name, field in form._fields.items() if name != "csrf_token"}

    def service_create(self, data):
        raise NotImplementedError

    def service_update(self, item, data):
        raise NotImplementedError

    def get_add_form_class(self):
        return self.add_form

    def get_edit_form_class(self, item):
        return self.edit_form

    def _run_service(self, fn, form):
        try:
            result = fn()
        except DomainError as exc:
            db.session.rollback()
            leftovers = form_field_errors(form, exc.field_errors)
            flash(str(exc.message), "danger")
            for message in leftovers:
                flash(message, "danger")
            return None, False
        except IntegrityError:
            db.session.rollback()
            log.exception("integrity error in %s", self.__class__.__name__)
            flash(gettext("The record clashes with existing data (a value that must be unique is already "
                          "used)."), "danger")
            return None, False
        except SQLAlchemyError:
            db.session.rollback()
            log.exception("database error in %s", self.__class__.__name__)
            flash(gettext("The database could not save the record. Please try again."), "danger")
            return None, False
        return result, True

    def _add(self):
        form = self.get_add_form_class().refresh()
        if request.method == "POST":
            form = self.get_add_form_class()(request.form)
            if form.validate():
                item, ok = self._run_service(lambda: self.service_create(self.form_to_data(form)), form)
                if ok:
                    g.created_item = item
                    flash(str(self.add_row_message), "success")
                    return None
        else:
            self.prefill_add_form(form)
        return self._get_add_widget(form=form)

    def prefill_add_form(self, form):
        pass

    def _edit(self, pk):
        item = self.datamodel.get(self._deserialize_pk_if_composite(pk), self._base_filters)
        if item is None:
            abort(404)
        form_class = self.get_edit_form_class(item)
        if request.method == "POST":
            form = form_class(request.form)
            if form.validate():
                _, ok = self._run_service(lambda: self.service_update(item, self.form_to_data(form, item)), form)
                if ok:
                    flash(str(self.edit_row_message), "success")
                    return None
        else:
            form = form_class(obj=item)
            self.prefill_edit_form(form, item)
        widgets = self._get_edit_widget(form=form)
        return self._get_related_views_widgets(item, filters={}, orders={}, pages={}, page_sizes={},
                                               widgets=widgets)

    def prefill_edit_form(self, form, item):
        pass

    def _delete(self, pk):
        item = self.datamodel.get(self._deserialize_pk_if_composite(pk), self._base_filters)
        if item is None:
            abort(404)
        try:
            self.service_delete(item)
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "danger")
        else:
            flash(str(self.delete_row_message), "success")
        self.update_redirect()

    def service_delete(self, item):
        db.session.delete(item)
        db.session.commit()


class NotFoundOnDomainError:
    """Turn NotFound raised by a service into a 404."""

    @staticmethod
    def guard(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotFound:
            abort(404)
