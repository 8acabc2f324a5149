"""Import/export benchmark (spec 10, bars I1–I3 and E1): prints rows/s and peak RSS. Never run in CI.

    python bench/import_bench.py --db sqlite:////tmp/bench.db --file /tmp/clients_100k.csv
    python bench/import_bench.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench --file ... --export

Each phase (set-up, import, re-import, export) runs in its own process so its peak RSS is its own.
Beside each phase's figures: its CPU seconds, in Python (the phase's process and its helper) and in a
local PostgreSQL server, and first a fixed Python loop's time. The same code on these shared machines
ran 2.5-10x apart between sessions; the CPU split tells which side a run waited on.
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


def phase_peer_copy_in(db_url, path):
    """Peer of I1 (spec 10's physical limit): PostgreSQL COPY of the raw file into a table of text
    columns without indexes, no validation. Timed from the client, like the import."""
    import csv as csv_

    import psycopg
    from sqlalchemy.engine import make_url
    url = make_url(db_url)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        width = len(next(csv_.reader(fh)))
    cols = ", ".join(f"c{i} text" for i in range(width))
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_peer_raw")
        conn.execute(f"CREATE TABLE bench_peer_raw ({cols})")
        conn.commit()
        t0 = time.perf_counter()
        with conn.cursor() as cur, open(path, "rb") as fh:
            with cur.copy("COPY bench_peer_raw FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                while block := fh.read(1 << 16):
                    copy.write(block)
            rows = cur.rowcount
        conn.commit()
        seconds = time.perf_counter() - t0
        conn.execute("DROP TABLE bench_peer_raw")
        conn.commit()
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": int(rows / seconds)}


# The tables an import writes, in the order it writes them.
_FLOOR_TABLES = ("client", "client_tag", "audit_log")


def phase_floor(db_url, connections):
    """The database's own share of an import: the rows client, client_tag and audit_log hold after
    it (with the set-up's few audit rows) written again, by COPY as the import writes them, into
    copies of those tables with the same indexes, defaults and foreign keys, with no Python between
    rows. The rows are read out first (not timed); the writes are split over `connections`
    concurrent connections by client id, as the import's writer threads split its chunks. Run after
    the import; the copies are dropped."""
    import threading

    import psycopg
    from sqlalchemy.engine import make_url
    url = make_url(db_url)

    def connect():
        return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)

    keys = {"client": "id", "client_tag": "client_id", "audit_log": "client_id"}
    order = {"client": "id", "client_tag": "client_id, tag_id", "audit_log": "id"}  # as written
    parts = {}  # (table, part) -> binary COPY data
    with connect() as conn:
        for table in _FLOOR_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS bench_floor_{table}")
            conn.execute(f"CREATE TABLE bench_floor_{table} (LIKE {table} INCLUDING ALL)")
            for name, definition in conn.execute(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s::regclass AND contype = 'f'", (table,)).fetchall():
                definition = definition.replace("REFERENCES client(", "REFERENCES bench_floor_client(")
                conn.execute(f"ALTER TABLE bench_floor_{table} ADD CONSTRAINT floor_{name} {definition}")
            for part in range(connections):
                query = (f"SELECT * FROM {table} WHERE coalesce({keys[table]}, 0) % {connections} = {part} "
                         f"ORDER BY {order[table]}")
                with conn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as copy:
                    parts[table, part] = b"".join(bytes(block) for block in copy)
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _FLOOR_TABLES}
        conn.commit()
    failures = []
    backend_cpu = []  # each writing backend's CPU seconds, read from /proc before it ends
    tick = os.sysconf("SC_CLK_TCK")

    def write(part):
        try:
            with connect() as conn, conn.cursor() as cur:
                for table in _FLOOR_TABLES:
                    with cur.copy(f"COPY bench_floor_{table} FROM STDIN (FORMAT binary)") as copy:
                        copy.write(parts[table, part])
                conn.commit()
                try:
                    fields = _proc_stat(conn.info.backend_pid)
                    backend_cpu.append((int(fields[11]) + int(fields[12])) / tick)
                except (OSError, IndexError, ValueError):  # not a local server this user can read
                    pass
        except Exception as exc:  # reported by the phase, not lost in a thread
            failures.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - t0
    with connect() as conn:
        for table in reversed(_FLOOR_TABLES):
            conn.execute(f"DROP TABLE bench_floor_{table}")
        conn.commit()
    if failures:
        raise failures[0]
    return {"rows": rows, "seconds": round(seconds, 2), "connections": connections,
            "writes_postgres_cpu_s": round(sum(backend_cpu), 1) if len(backend_cpu) == connections else None}


def phase_peer_copy_out(db_url):
    """Peer of E1 (spec 10's physical limit): COPY TO of the export's joined shape (the same columns
    and joins, tags aggregated) with no formatting or formula guard, read by this process."""
    app = _app(db_url)
    with app.app_context():
        from sqlalchemy import Text, cast, select

        from app.clients.models import Client, ClientStatus
        from app.extensions import db
        from app.imports import exports
        from app.organisation.models import Desk, Project
        User = app.appbuilder.sm.user_model
        tags = exports._sql_tags()
        cols = [cast(c, Text) for c in (Client.id, Client.email, Client.client_type, Client.first_name,
                                        Client.last_name, Client.company_name, Client.phone,
                                        Client.additional_phone, Client.state, ClientStatus.label,
                                        Client.created_at, Client.country, Client.region, Client.city,
                                        Client.address, Client.postcode, Project.key, Desk.name, User.email,
                                        Client.affiliate_id, Client.campaign_id, Client.source_id, Client.sub_id,
                                        Client.external_id, Client.gender, Client.date_of_birth,
                                        Client.nationality, Client.description, tags.c.names)]
        stmt = (select(*cols).select_from(Client).join(Project, Project.id == Client.project_id)
                .outerjoin(Desk, Desk.id == Client.desk_id).outerjoin(User, User.id == Client.manager_id)
                .outerjoin(ClientStatus, ClientStatus.id == Client.status_id)
                .outerjoin(tags, tags.c.client_id == Client.id).order_by(Client.id))
        sql = str(stmt.compile(dialect=db.session.get_bind().dialect, compile_kwargs={"literal_binds": True}))
        connection = db.session.connection().connection.driver_connection
        t0 = time.perf_counter()
        with connection.cursor() as cur, open("/dev/null", "wb") as out:
            with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
                for block in copy:
                    out.write(block)
            rows = cur.rowcount
        seconds = time.perf_counter() - t0
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": int(rows / seconds)}


def child(args):
    if args.phase == "setup":
        out = phase_setup(args.db)
    elif args.phase == "import":
        out = phase_import(args.db, args.file)
    elif args.phase == "peer-in":
        out = phase_peer_copy_in(args.db, args.file)
    elif args.phase == "peer-out":
        out = phase_peer_copy_out(args.db)
    elif args.phase in ("floor-1", "floor-2"):
        out = phase_floor(args.db, int(args.phase[-1]))
    else:
        out = phase_export(args.db)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(out))


def python_speed():
    """Seconds of a fixed pure-Python loop (20M additions): this machine's Python speed, printed
    beside the figures. Measured here: 0.40 s on one session's machine, 4.2 s on another's."""
    t0 = time.perf_counter()
    total = 0
    for i in range(20_000_000):
        total += i
    return time.perf_counter() - t0


def _postgres_cpu(db_url):
    """CPU seconds used so far by the local PostgreSQL server: its processes' own times plus the
    times of its exited children (a finished backend's CPU lands in the postmaster's). None when
    the server is not a local process this user can read in /proc."""
    import psycopg
    from sqlalchemy.engine import make_url
    url = make_url(db_url)
    tick = os.sysconf("SC_CLK_TCK")
    try:
        with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            postmaster = int(_proc_stat(backend)[1])  # while the backend lives
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
        total = 0
        for pid in pids:
            try:
                fields = _proc_stat(pid)
            except OSError:
                continue
            if pid == postmaster:
                total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            elif int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / tick
    except (OSError, ValueError, IndexError, psycopg.Error):
        return None


def _proc_stat(pid):
    """/proc/PID/stat's fields after the command name: [state, ppid, …, utime (11), stime (12),
    cutime (13), cstime (14), …]."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rpartition(")")[2].split()


def run_phase(args, phase):
    cmd = [sys.executable, __file__, "--db", args.db, "--phase", phase]
    if args.file:
        cmd += ["--file", args.file]
    postgresql = args.db.startswith("postgresql")
    pg0 = _postgres_cpu(args.db) if postgresql else None
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    pg1 = _postgres_cpu(args.db) if postgresql else None
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[7:])
            # the phase's process and the children it waited for (the import's phone helper)
            out["python_cpu_s"] = round(own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime, 1)
            out["postgres_cpu_s"] = round(pg1 - pg0, 1) if pg0 is not None and pg1 is not None else None
            return out
    sys.stderr.write(res.stdout[-3000:] + res.stderr[-5000:])
    raise SystemExit(f"phase {phase} failed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--file")
    ap.add_argument("--phase", choices=["setup", "import", "export", "peer-in", "peer-out", "floor-1", "floor-2"])
    ap.add_argument("--export", action="store_true", help="also measure the CSV export of all clients")
    ap.add_argument("--reimport", action="store_true", help="also re-run the same file (all unchanged)")
    args = ap.parse_args()
    if args.phase:
        return child(args)
    postgresql = args.db.startswith("postgresql")
    print(f"machine: 2e7-iteration Python loop {python_speed():.2f} s, {os.cpu_count()} cores")
    if args.export and not args.file:  # export only, from an existing database (e.g. the 1M seed)
        _export(args, postgresql)
        return None
    dialect = args.db.split(":")[0]
    run_phase(args, "setup")
    # the COPY peer reads the file as CSV text: none for an XLSX file
    peer = run_phase(args, "peer-in") if postgresql and not args.file.lower().endswith(".xlsx") else None
    r = run_phase(args, "import")
    print(f"import  {dialect:28s} rows={r['total']} {r['seconds']}s  {r['rows_per_s']} rows/s  "
          f"peak RSS {r['peak_rss_mb']} MB  created={r['created']} updated={r['updated']} "
          f"unchanged={r['unchanged']} failed={r['failed']}")
    print(_cpu_line(r))
    if peer:
        # spec 10, I1: 10,000 rows/s against a COPY of ~270,000-280,000 rows/s where it was set
        print(f"  peer: COPY of the raw file, same run: {peer['rows_per_s']} rows/s ({peer['seconds']}s); "
              f"import/COPY = 1/{peer['rows_per_s'] / max(r['rows_per_s'], 1):.0f} (bar I1: 1/{275_000 / 10_000:.0f})")
    if postgresql:
        # The same rows written again by the server alone: what the schema's indexes, foreign keys
        # and WAL cost before any parsing, validation or Python (the least an import can take here).
        for phase in ("floor-1", "floor-2"):
            f = run_phase(args, phase)
            print(f"  floor: the import's final rows ({f['rows']['client']} clients, {f['rows']['client_tag']} "
                  f"tag links, {f['rows']['audit_log']} audit rows) by COPY into copies with the same "
                  f"indexes, {f['connections']} connection(s): {f['seconds']}s, "
                  f"PostgreSQL {f['writes_postgres_cpu_s']} cpu-s; import/floor = {r['seconds'] / f['seconds']:.1f}")
    if args.reimport:
        r = run_phase(args, "import")
        print(f"reimport {dialect:27s} rows={r['total']} {r['seconds']}s  {r['rows_per_s']} rows/s  "
              f"peak RSS {r['peak_rss_mb']} MB  created={r['created']} updated={r['updated']} "
              f"unchanged={r['unchanged']} failed={r['failed']}")
        print(_cpu_line(r))
    if args.export:
        _export(args, postgresql)


def _cpu_line(r):
    """The phase's CPU: where the time of a run that keeps both cores busy goes."""
    pg = r.get("postgres_cpu_s")
    return (f"  cpu: Python {r['python_cpu_s']} s (import process and its helper)"
            + (f", PostgreSQL {pg} s" if pg is not None else ""))


def _export(args, postgresql):
    r = run_phase(args, "export")
    print(f"export  {args.db.split(':')[0]:28s} rows={r['rows']} {r['seconds']}s  {r['rows_per_s']} rows/s  "
          f"peak RSS {r['peak_rss_mb']} MB")
    print(_cpu_line(r))
    if postgresql:
        peer = run_phase(args, "peer-out")
        # spec 10, E1: 100,000 rows/s against a COPY TO of the joined shape of ~224,000 rows/s
        print(f"  peer: COPY TO of the joined export shape, same run: {peer['rows_per_s']} rows/s "
              f"({peer['seconds']}s); export/COPY = {r['rows_per_s'] / max(peer['rows_per_s'], 1):.2f} "
              f"(bar E1: {100_000 / 224_000:.2f})")


if __name__ == "__main__":
    main()
