"""Who is acting right now: the request's user, a job's initiating user, or a CLI operator.

The audit listener reads this so nobody has to pass "who" to the log by hand.
"""

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app, has_request_context


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    job_id: str | None = None


_actor = contextvars.ContextVar("clientdesk_actor", default=None)


@contextmanager
def acting_as(user_id, job_id=None):
    """Attribute everything written inside the block to user_id (and job_id when a job runs)."""
    token = _actor.set(Actor(user_id, job_id))
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor():
    actor = _actor.get()
    if actor is not None:
        return actor
    if has_request_context():
        user = current_app.appbuilder.sm.current_user
        if user is not None and getattr(user, "id", None):
            return Actor(user.id)
    return Actor(None)
