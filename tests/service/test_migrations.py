"""Migrations apply from empty on PostgreSQL and SQLite, agree with the models, and ship
inside the package (so `twinlens db upgrade` works from a wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from twinlens.db.base import Base
from twinlens.db.migrate import alembic_config, current_revision, downgrade, schema_differences, upgrade
from twinlens.db.session import Database

TWINLENS = str(Path(sys.executable).with_name("twinlens"))
ROOT = Path(__file__).resolve().parents[2]
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _check_from_empty(url: str) -> None:
    database = Database(url)
    try:
        assert current_revision(database.engine) is None
        upgrade(database.engine)
        assert current_revision(database.engine) == HEAD
        assert set(inspect(database.engine).get_table_names()) >= set(Base.metadata.tables)
        assert schema_differences(database.engine) == []
        upgrade(database.engine)  # applying again is a no-op
        downgrade(database.engine, "base")  # and the downgrade path works
        assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
        upgrade(database.engine)
        assert schema_differences(database.engine) == []
    finally:
        database.dispose()


def test_postgresql_from_empty(empty_postgres_url):
    _check_from_empty(empty_postgres_url)


def test_sqlite_from_empty(tmp_path):
    _check_from_empty(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_the_check_notices_a_model_without_a_migration(tmp_path):
    from sqlalchemy import Column, Integer, Table

    database = Database(f"sqlite:///{tmp_path / 'drift.db'}")
    upgrade(database.engine)
    extra = Table("not_migrated", Base.metadata, Column("id", Integer, primary_key=True))
    try:
        differences = schema_differences(database.engine)
    finally:
        Base.metadata.remove(extra)
    assert any(diff[0] == "add_table" and diff[1].name == "not_migrated" for diff in differences)


def test_cli_db_upgrade_and_check(tmp_path):
    env = {**os.environ, "TWINLENS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "TWINLENS_DATA_DIR": str(tmp_path)}
    upgraded = subprocess.run([TWINLENS, "db", "upgrade"], capture_output=True, text=True, env=env, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"revision {HEAD}" in upgraded.stdout
    checked = subprocess.run([TWINLENS, "db", "check"], capture_output=True, text=True, env=env, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert "agree" in checked.stdout


def test_migrations_are_package_data():
    package = files("twinlens") / "migrations"
    assert (package / "env.py").is_file() and (package / "script.py.mako").is_file()
    assert any(entry.name.startswith("0001") for entry in (package / "versions").iterdir())


def test_the_wheel_carries_the_migrations(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("twinlens-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("twinlens/migrations/env.py", "twinlens/migrations/script.py.mako",
                   "twinlens/migrations/versions/0001_initial_schema.py", "twinlens/migrations/versions/0002_training_runs.py"):
        assert needed in names, needed
