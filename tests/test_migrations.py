"""Migrations: idempotent, concurrent-safe, hypertables in place, clear refusal without TimescaleDB."""

from __future__ import annotations

import threading

import psycopg
import pytest

from liftwatch import db as dbmod
from liftwatch.errors import MigrationError

SCHEMA_QUERY = """
SELECT table_name, column_name, data_type, is_nullable, column_default
  FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"""


def _schema(url: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        cols = c.execute(SCHEMA_QUERY).fetchall()
        idx = c.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1").fetchall()
    return cols + idx


def test_migrate_twice_gives_the_same_schema(db_url: str) -> None:
    before = _schema(db_url)
    assert dbmod.migrate(db_url) == []  # already applied by the template
    assert _schema(db_url) == before
    with psycopg.connect(db_url) as c:
        assert dbmod.applied_versions(c) == [m.version for m in dbmod.load_migrations()]


def test_fresh_database_concurrent_migrate(server_dsn: str) -> None:
    url = server_dsn.rsplit("/", 1)[0] + "/lw_concurrent_migrate"
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS lw_concurrent_migrate")
    results: list[object] = []

    def run() -> None:
        try:
            results.append(len(dbmod.migrate(url)))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == len(dbmod.load_migrations())  # each applied exactly once
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute("DROP DATABASE lw_concurrent_migrate WITH (FORCE)")


def test_hypertables_exist(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1"
    ).fetchall()
    assert [r[0] for r in rows] == ["events", "telemetry"]
    dims = dict(conn.execute(
        "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions"
    ).fetchall())
    assert dims["telemetry"].days == 1 and dims["events"].days == 7


def test_telemetry_unique_key_dedupes(conn: psycopg.Connection) -> None:
    sql = "INSERT INTO telemetry (time, unit_id, seq) VALUES ('2026-01-01T00:00:00Z', 'u1', 1) ON CONFLICT DO NOTHING"
    assert conn.execute(sql).rowcount == 1
    assert conn.execute(sql).rowcount == 0


def test_edited_migration_is_refused(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        dbmod.migrate(db_url)


def test_refuses_without_timescaledb_preloaded(tmp_path) -> None:
    """A server without timescaledb preloaded gets a message naming the install script."""
    from liftwatch.throwaway import PgCluster

    cluster = PgCluster(settings={"shared_preload_libraries": ""}).init().start()
    try:
        with pytest.raises(MigrationError, match="install-timescaledb.sh"):
            dbmod.migrate(cluster.dsn("liftwatch"))
        with psycopg.connect(cluster.dsn("liftwatch")) as c:  # and nothing was applied
            assert dbmod.applied_versions(c) == []
    finally:
        cluster.destroy()
