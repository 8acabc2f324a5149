"""Load a deterministic benchmark organisation into PostgreSQL: 20 projects, 100 desks, 200 managers
and N clients (default 1,000,000), generated inside the database with generate_series.

    .venv/bin/python bench/seed_million.py --url postgresql+psycopg://postgres@127.0.0.1:5432/clientdesk_bench

The schema comes from the project's migrations; roles from `flask clientdesk init-security`; an
admin `bench` / `Bench-pass-1!` is created. This is reference data for measurements, so the clients
are written raw (no per-row audit), the way a bulk load from another system would arrive.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FIRST = ["Anna", "Ben", "Carla", "David", "Elena", "Farid", "Greta", "Hugo", "Irina", "Jakub", "Kira", "Luis", "Mei",
         "Nikolai", "Olivia", "Pablo", "Quentin", "Rosa", "Sven", "Tatiana", "Umar", "Vera", "Wei", "Ximena", "Yusuf",
         "Zoe", "Maria", "John", "Fatima", "Igor"]
LAST = ["Schmidt", "Garcia", "Ivanov", "Smith", "Rossi", "Dubois", "Kowalski", "Novak", "Jensen", "Silva", "Brennan",
        "Muller", "Fernandez", "Kuznetsova", "Nguyen", "Yilmaz", "Okafor", "Tanaka", "Larsen", "Moreau", "Costa",
        "Popescu", "Horvat", "Svensson", "Kaya", "Weber", "Lopez", "Petrov", "Walker", "Hansen", "Abbott", "Zimmer",
        "Quinn", "Reyes", "Sato", "Vogel", "Ward", "Young", "Eriksen", "Duarte"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "example.org", "mail.ru", "gmx.de", "proton.me"]
COUNTRIES = ["DE", "ES", "US", "GB", "FR", "IT", "RU", "PL", "NL", "SE", "MX", "BR"]


def _array(values):
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/clientdesk_bench")
    parser.add_argument("--clients", type=int, default=1_000_000)
    args = parser.parse_args()

    from flask_migrate import upgrade
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(args.url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()

    from app import create_app
    from app.cli import ensure_admin, sync_security
    from app.extensions import db

    app = create_app("config.Config", SQLALCHEMY_DATABASE_URI=args.url)
    started = time.perf_counter()
    with app.app_context():
        upgrade(revision="heads")
        sync_security()
        ensure_admin("bench", "bench@example.org", "Bench-pass-1!")
        manager_role = app.appbuilder.sm.find_role("Manager")
        n = args.clients
        statements = [
            "INSERT INTO project (name, key, description, active, created_at) "
            "SELECT 'Project ' || i, 'P' || lpad(i::text, 2, '0'), 'Bench project', true, now() "
            "FROM generate_series(1, 20) i",
            "INSERT INTO desk (project_id, name, label, active) "
            "SELECT 1 + (i - 1) / 5, 'Desk ' || i, 'Desk ' || i, true FROM generate_series(1, 100) i",
            "INSERT INTO ab_user (first_name, last_name, username, password, active, email, created_on, changed_on) "
            "SELECT 'Manager', 'M' || i, 'manager' || i, 'x', true, 'manager' || i || '@bench.test', now(), now() "
            "FROM generate_series(1, 200) i",
            "INSERT INTO project_user (project_id, user_id) SELECT 1 + (u.id % 20), u.id FROM ab_user u "
            "WHERE u.username LIKE 'manager%'",
            f"INSERT INTO ab_user_role (user_id, role_id) SELECT u.id, {manager_role.id} FROM ab_user u "
            "WHERE u.username LIKE 'manager%'",
            "INSERT INTO client_status (label, label_translations, colour, \"order\", is_default, active) VALUES "
            "('New', '{}', '#3c8dbc', 10, true, true), ('Contacted', '{}', '#00a65a', 20, false, true), "
            "('VIP', '{}', '#f39c12', 30, false, true), ('High-Risk', '{}', '#dd4b39', 40, false, true)",
            f"""
            INSERT INTO client (uid, client_type, email, first_name, last_name, full_name, phone, country, city,
                project_id, desk_id, manager_id, status_id, state, outcome, processed, rating, description,
                verification_status, custom_fields, meta, created_at, updated_at, actions_exist, affiliate_id)
            SELECT 'C' || lpad(i::text, 7, '0') || 'P', 'personal',
                lower(f.first || '.' || l.last || '.' || i || '@' || ({_array(DOMAINS)})[1 + i % {len(DOMAINS)}]),
                f.first, l.last, f.first || ' ' || l.last,
                '+4915' || lpad((i % 1000000000)::text, 9, '0'),
                ({_array(COUNTRIES)})[1 + i % {len(COUNTRIES)}], 'City ' || (i % 500),
                1 + i % 20,
                CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + (i % 20) * 5 + (i % 5) END,
                CASE WHEN i % 2 = 0 THEN NULL ELSE (SELECT min(id) FROM ab_user WHERE username LIKE 'manager%')
                    + (i % 20) END,
                1 + i % 4, 'active', 'open', i % 3 <> 0, i % 4,
                CASE WHEN i % 7 = 0 THEN 'Asked about fees' ELSE NULL END,
                'init', '{{}}', '{{}}',
                timestamp '2024-01-01' + (i % 86400) * interval '1 second' + (i / 86400) * interval '1 day',
                now(), false, 'AFF' || (i % 100)
            FROM generate_series(1, {n}) i
            CROSS JOIN LATERAL (SELECT ({_array(FIRST)})[1 + (i * 7) % {len(FIRST)}] AS first) f
            CROSS JOIN LATERAL (SELECT ({_array(LAST)})[1 + (i * 13 / 7) % {len(LAST)}] AS last) l
            """,
            f"UPDATE uid_counter SET value = {n} WHERE name = 'client'",
        ]
        with db.engine.begin() as conn:
            for sql in statements:
                conn.execute(text(sql))
        # No transaction may stay open during the VACUUM (the app's session still holds one from the
        # set-up above): an older snapshot keeps it from marking pages all-visible, and every
        # index-only scan (the list's page ids) would then visit the heap too.
        db.session.remove()
        db.engine.dispose()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    print(f"seeded {args.clients:,} clients into {target.database} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
