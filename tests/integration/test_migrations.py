"""Migrations own the schema: an empty database upgrades with no drift, and downgrades cleanly."""

import importlib.util
import os

from sqlalchemy import inspect


def _load_checker():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "check_migrations.py")
    spec = importlib.util.spec_from_file_location("check_migrations", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_upgrade_from_empty_has_no_drift(tmp_path, monkeypatch):
    url = os.environ.get("TEST_DATABASE_URL", "")
    if url.startswith("postgresql"):
        from sqlalchemy.engine import make_url
        import hashlib
        checkout = hashlib.sha1(os.path.abspath(__file__).encode()).hexdigest()[:8]
        name = f"test_drift_{checkout}_" + os.environ.get("PYTEST_XDIST_WORKER", "main")
        url = make_url(url).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp_path / 'drift.db'}"
    monkeypatch.setenv("DRIFT_DATABASE_URL", url)
    assert _load_checker().main() == 0


def test_downgrade_to_empty_and_back(tmp_path):
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from app.extensions import db

    app = create_app("config.TestConfig", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'down.db'}")
    with app.app_context():
        upgrade(revision="heads")
        assert "client" in inspect(db.engine).get_table_names()
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade(revision="heads")
        assert "audit_log" in inspect(db.engine).get_table_names()
