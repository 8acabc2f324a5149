"""Domain errors raised by services and translated into flashes (UI) or 4xx answers (API)."""


class DomainError(Exception):
    """A business rule refused the operation; `message` is already translated for the user."""

    status = 422

    def __init__(self, message, field_errors=None):
        super().__init__(str(message))
        self.message = message
        self.field_errors = dict(field_errors or {})

    def __str__(self):
        return str(self.message)


class ValidationFailed(DomainError):
    """One or more fields are invalid; field_errors maps a field key to a list of messages."""

    def __init__(self, field_errors, message=None):
        from flask_babel import lazy_gettext as _l

        errors = {k: (v if isinstance(v, list) else [v]) for k, v in field_errors.items()}
        super().__init__(message or _l("Please correct the errors below."), errors)


class NotFound(DomainError):
    """The record does not exist or lies outside the actor's scope (indistinguishable on purpose)."""

    status = 404


class Forbidden(DomainError):
    """The actor lacks the permission the operation needs."""

    status = 403


class Conflict(DomainError):
    """The operation clashes with existing data (e.g. a record still in use)."""

    status = 409
