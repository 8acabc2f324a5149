"""Import/export benchmark (spec 10, bars I1–I3 and E1): prints rows/s and peak RSS. Never run in CI.

    python bench/import_bench.py --db sqlite:////tmp/bench.db --file /tmp/clients_100k.csv
    python bench/import_bench.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench --file ... --export

Each phase (set-up, import, re-import, export) runs in its own process so its peak RSS is its own.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))


def _app(db_url):
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("REDIS_URL", "")
    os.environ["REDIS_URL"] = ""
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdef0123456789")
    from app import create_app
    return create_app("config.Config", SQLALCHEMY_DATABASE_URI=db_url, REDIS_URL="", RATELIMIT_ENABLED=False,
                      FAB_PASSWORD_HASH_METHOD="pbkdf2:sha256:1000",
                      IMPORT_FOLDER="/tmp/clientdesk-bench-imports", EXPORT_FOLDER="/tmp/clientdesk-bench-exports")


def phase_setup(db_url):
    from flask_migrate import upgrade
    from sqlalchemy import text

    import generate_clients_csv as gen
    if db_url.startswith("sqlite:///"):
        path = db_url[len("sqlite:///"):]
        if os.path.exists(path):
            os.remove(path)
    elif db_url.startswith("postgresql"):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        url = make_url(db_url)
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname=:n"), {"n": url.database}).scalar():
                conn.execute(text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
        eng = create_engine(url, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        eng.dispose()
    app = _app(db_url)
    with app.app_context():
        from app.cli import ensure_admin, sync_security
        from app.clients.models import ClientStatus
        from app.extensions import db
        from app.organisation.models import Desk, Project
        upgrade(revision="heads")
        sync_security()
        ensure_admin("admin", "admin@bench.test", "Bench-Passw0rd!")
        projects, desks, managers = gen.org()
        pobj = {}
        for key, name in projects:
            pobj[key] = Project(key=key, name=name, active=True)
        db.session.add_all(pobj.values())
        for key, name in desks:
            db.session.add(Desk(project=pobj[key], name=name, label=name))
        db.session.add_all([ClientStatus(label="New", is_default=True, order=1), ClientStatus(label="VIP", order=2),
                            ClientStatus(label="High-Risk", order=3)])
        db.session.commit()
        sm = app.appbuilder.sm
        role = sm.find_role("Agent")
        for key, username, email in managers:
            u = sm.add_user(username, "M", username, email, role, "Bench-Passw0rd!")
            u.projects = [pobj[key]]
        db.session.commit()
    return {}


def phase_import(db_url, path):
    app = _app(db_url)
    with app.app_context():
        from app.imports import services
        admin = app.appbuilder.sm.find_user(username="admin")
        t0 = time.perf_counter()
        job = services.import_file(path, admin)
        dt_ = time.perf_counter() - t0
        p = services.status_payload(job)
    p["seconds"] = round(dt_, 2)
    p["rows_per_s"] = int((p["total"] or 0) / dt_) if dt_ else 0
    return p


def phase_export(db_url):
    app = _app(db_url)
    with app.app_context():
        from app.imports import exports
        # the seeded 1M-client database (bench/seed_million.py) has its admin under another name
        admin = (app.appbuilder.sm.find_user(username="admin")
                 or app.appbuilder.sm.find_user(username=os.environ.get("BENCH_EXPORT_USER", "bench")))
        t0 = time.perf_counter()
        n = 0
        with open("/dev/null", "wb") as out:
            for chunk in exports.stream_csv(admin, exports.ExportRequest()):
                out.write(chunk)
                n += 1
        dt_ = time.perf_counter() - t0
        rows = exports.last_row_count()
    return {"rows": rows, "seconds": round(dt_, 2), "rows_per_s": int(rows / dt_) if dt_ else 0}


def child(args):
    if args.phase == "setup":
        out = phase_setup(args.db)
    elif args.phase == "import":
        out = phase_import(args.db, args.file)
    else:
        out = phase_export(args.db)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(out))


def run_phase(args, phase):
    cmd = [sys.executable, __file__, "--db", args.db, "--phase", phase]
    if args.file:
        cmd += ["--file", args.file]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(res.stdout[-3000:] + res.stderr[-5000:])
    raise SystemExit(f"phase {phase} failed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--file")
    ap.add_argument("--phase", choices=["setup", "import", "export"])
    ap.add_argument("--export", action="store_true", help="also measure the CSV export of all clients")
    ap.add_argument("--reimport", action="store_true", help="also re-run the same file (all unchanged)")
    args = ap.parse_args()
    if args.phase:
        return child(args)
    if args.export and not args.file:  # export only, from an existing database (e.g. the 1M seed)
        r = run_phase(args, "export")
        print(f"export  {args.db.split(':')[0]:28s} rows={r['rows']} {r['seconds']}s  {r['rows_per_s']} rows/s  "
              f"peak RSS {r['peak_rss_mb']} MB")
        return None
    dialect = args.db.split(":")[0]
    run_phase(args, "setup")
    r = run_phase(args, "import")
    print(f"import  {dialect:28s} rows={r['total']} {r['seconds']}s  {r['rows_per_s']} rows/s  "
          f"peak RSS {r['peak_rss_mb']} MB  created={r['created']} updated={r['updated']} "
          f"unchanged={r['unchanged']} failed={r['failed']}")
    if args.reimport:
        r = run_phase(args, "import")
        print(f"reimport {dialect:27s} rows={r['total']} {r['seconds']}s  {r['rows_per_s']} rows/s  "
              f"peak RSS {r['peak_rss_mb']} MB  created={r['created']} updated={r['updated']} "
              f"unchanged={r['unchanged']} failed={r['failed']}")
    if args.export:
        r = run_phase(args, "export")
        print(f"export  {dialect:28s} rows={r['rows']} {r['seconds']}s  {r['rows_per_s']} rows/s  "
              f"peak RSS {r['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
