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


@contextmanager
def as_actor(user):
    """Attribute writes in the block to `user`, keeping the job id of an enclosing job context."""
    outer = _actor.get()
    user_id = getattr(user, "id", None)
    if user_id is None or (outer is not None and outer.user_id == user_id):
        yield
        return
    token = _actor.set(Actor(user_id, outer.job_id if outer else None))
    try:
        yield
    finally:
        _actor.reset(token)


def attributed(fn):
    """Decorator for service verbs: everything they write is attributed to their `actor` argument."""
    import functools
    import inspect
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        actor = signature.bind_partial(*args, **kwargs).arguments.get("actor")
        with as_actor(actor):
            return fn(*args, **kwargs)
    return wrapper
