"""`flask clientdesk …` commands: set-up, roles and permissions, admin, demo data."""

import os
import secrets

import click
from flask import current_app
from flask.cli import with_appcontext

from .clients.permissions import GRANULAR_PERMISSIONS
from .core.actor import acting_as

@click.group("clientdesk")
def clientdesk():
    """ClientDesk administration."""


def sync_security():
    """Roles (Admin, Public, FAB_ROLES) and every permission; the Admin role gets all of them."""
    from flask_appbuilder.security.manager import BaseSecurityManager
    appbuilder = current_app.appbuilder
    sm = appbuilder.sm
    BaseSecurityManager.create_db(sm)
    appbuilder.add_permissions(update_perms=True)
    admin = sm.find_role(current_app.config["AUTH_ROLE_ADMIN"])
    for name in GRANULAR_PERMISSIONS:
        pv = sm.add_permission_view_menu(name, "Clients")
        sm.add_permission_role(admin, pv)
    public = sm.find_role(current_app.config["AUTH_ROLE_PUBLIC"])
    if public is not None:
        for pv in list(public.permissions):  # the Public role holds nothing (R7)
            sm.del_permission_role(public, pv)


@clientdesk.command("init-security")
@with_appcontext
def init_security():
    """Create roles and permissions on a migrated database (run at deploy time)."""
    sync_security()
    click.echo("Roles and permissions are in place.")


def ensure_admin(username, email, password, first="Admin", last="User"):
    sm = current_app.appbuilder.sm
    user = sm.find_user(username=username)
    if user is not None:
        return user, False
    role = sm.find_role(current_app.config["AUTH_ROLE_ADMIN"])
    user = sm.add_user(username, first, last, email, role, password)
    if not user:
        raise click.ClickException("Could not create the admin user.")
    return user, True


@clientdesk.command("create-admin")
@click.option("--username", default=lambda: os.environ.get("ADMIN_USERNAME", "admin"))
@click.option("--email", default=lambda: os.environ.get("ADMIN_EMAIL", "admin@example.org"))
@click.option("--password", default=lambda: os.environ.get("ADMIN_PASSWORD", ""))
@with_appcontext
def create_admin(username, email, password):
    """Create the first admin (password from ADMIN_PASSWORD, or generated and printed once)."""
    generated = not password
    password = password or secrets.token_urlsafe(12)
    _, created = ensure_admin(username, email, password)
    if created:
        click.echo(f"Admin user created: {username}")
        if generated:
            click.echo(f"Password (shown once): {password}")
    else:
        click.echo(f"Admin user {username} already exists.")


@clientdesk.command("seed-demo")
@click.option("--clients", default=500, show_default=True)
@click.option("--seed", default=42, show_default=True)
@with_appcontext
def seed_demo(clients, seed):
    """Demo data: 3 projects, 8 desks, 12 staff users, settings lists and ~500 clients (idempotent)."""
    from . import demo
    admin = current_app.appbuilder.sm.find_user(username=os.environ.get("ADMIN_USERNAME", "admin"))
    with acting_as(admin.id if admin else None):
        result = demo.seed(clients=clients, seed=seed)
    click.echo(result)


@clientdesk.command("setup")
@with_appcontext
def setup():
    """First run: permissions, admin (credentials printed once) and demo data, each step idempotent."""
    from . import demo
    sync_security()
    username = os.environ.get("ADMIN_USERNAME", "admin")
    password = os.environ.get("ADMIN_PASSWORD", "")
    generated = not password
    password = password or secrets.token_urlsafe(12)
    admin, created = ensure_admin(username, os.environ.get("ADMIN_EMAIL", "admin@example.org"), password)
    if created:
        click.echo("=" * 60)
        click.echo(f"Admin login: {username}")
        click.echo(f"Password:    {password}" + ("   (generated; shown only now)" if generated else ""))
        click.echo("=" * 60)
    with acting_as(admin.id):
        click.echo(demo.seed(clients=int(os.environ.get("DEMO_CLIENTS", "500")), seed=42))


@clientdesk.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--user", "username", required=True, help="The staff user the import acts as (scope, audit).")
@click.option("--project", default=None, help="Default project (id, name or key) for rows without one.")
@click.option("--dry-run", is_flag=True, help="Validate and report only; change nothing.")
@click.option("--encoding", default=None, help="utf-8, utf-8-sig, cp1252, cp1251 or latin-1 (default: detected).")
@click.option("--delimiter", default=None, help="',', ';', 'tab' or '|' (default: detected).")
@with_appcontext
def import_clients(path, username, project, dry_run, encoding, delimiter):
    """Import clients from a CSV or XLSX file through the same pipeline as the import screen."""
    from .core.errors import DomainError
    from .imports import services as imports
    user = current_app.appbuilder.sm.find_user(username=username)
    if user is None or not user.active:
        raise click.ClickException(f"No active user {username}.")
    from .core.permissions import user_can
    if not user_can(user, "can_import"):
        raise click.ClickException(f"{username} may not import clients (can_import).")
    try:
        job = imports.import_file(path, user, project=project, dry_run=dry_run, encoding=encoding,
                                  delimiter=delimiter)
    except DomainError as exc:
        messages = [str(m) for msgs in exc.field_errors.values() for m in msgs] or [str(exc)]
        raise click.ClickException("; ".join(messages))
    p = imports.status_payload(job)
    click.echo(f"import {p['id']}: {p['status']}{' (dry run)' if p['dry_run'] else ''} "
               f"created={p['created']} updated={p['updated']} unchanged={p['unchanged']} "
               f"failed={p['failed']} notices={p['notices']}")
    if p["reason"]:
        click.echo(p["reason"])


@clientdesk.command("purge-exports")
@with_appcontext
def purge_exports():
    """Delete export files older than EXPORT_KEEP_HOURS (run it from cron, e.g. hourly)."""
    from .imports import exports
    click.echo(f"deleted {exports.purge_expired_exports()} export file(s)")


@clientdesk.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@with_appcontext
def worker(burst):
    """Run an RQ worker for ClientDesk jobs (JSON serializer; needs REDIS_URL)."""
    if not current_app.config.get("REDIS_URL"):
        raise click.ClickException("REDIS_URL is not set: jobs run inline, no worker is needed.")
    from .imports.jobs import run_worker
    run_worker(burst=burst)
