#!/bin/sh
# ClientDesk container entrypoint.
# Web role (the command is gunicorn, or ROLE=web): wait for the database, apply migrations,
# sync roles and permissions (deploy time, not in every process: FAB_UPDATE_PERMS stays off),
# create the admin when ADMIN_PASSWORD is set, then exec the command.
# Any other role (ROLE=worker for `flask clientdesk worker`, or a one-off command) just execs.
set -eu

export FLASK_APP="${FLASK_APP:-run:app}"

log() {
    echo "entrypoint: $*" >&2
}

wait_for_database() {
    # DATABASE_URL unset means the embedded SQLite file under instance/: nothing to wait for.
    [ -n "${DATABASE_URL:-}" ] || return 0
    python - <<'PY'
import os
import sys
import time

from sqlalchemy import create_engine, text

timeout = int(os.environ.get("DB_WAIT_TIMEOUT") or 60)
engine = create_engine(os.environ["DATABASE_URL"])
deadline = time.monotonic() + timeout
while True:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        break
    except Exception as exc:  # the URL holds a password: report the error class only
        if time.monotonic() >= deadline:
            print(f"entrypoint: database not reachable after {timeout}s ({type(exc).__name__})",
                  file=sys.stderr)
            sys.exit(1)
        time.sleep(1)
engine.dispose()
PY
}

role="${ROLE:-}"
if [ -z "$role" ]; then
    case "${1:-}" in
        gunicorn | */gunicorn) role=web ;;
        *) role=other ;;
    esac
fi

if [ "$role" = "web" ]; then
    log "waiting for the database"
    wait_for_database
    log "flask db upgrade"
    flask db upgrade heads
    log "flask clientdesk init-security"
    flask clientdesk init-security
    if [ -n "${ADMIN_PASSWORD:-}" ]; then
        # Reads ADMIN_USERNAME / ADMIN_EMAIL / ADMIN_PASSWORD; does nothing if the user exists.
        log "flask clientdesk create-admin"
        flask clientdesk create-admin
    fi
fi

exec "$@"
