"""Backup and restore with pg_dump / pg_restore, the TimescaleDB way.

Restoring a TimescaleDB database needs `timescaledb_pre_restore()` before the data and
`timescaledb_post_restore()` after it (the extension's catalog is restored as plain data).
Triggers are disabled while the data loads (`--disable-triggers`, superuser): the
immutability triggers would otherwise refuse to re-insert the items of signed orders.
`liftwatch db restore` then runs `liftwatch ledger verify` and compares row counts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from liftwatch.db import connect, redact
from liftwatch.errors import ConfigurationError, LiftwatchError

COUNTED_TABLES = ("units", "people", "telemetry", "events", "work_orders", "signatures", "ledger",
                  "hazards", "alerts", "rejected_messages")


def _tool(name: str) -> str:
    from liftwatch.throwaway import pg_bindir

    path = pg_bindir() / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise ConfigurationError(f"{name} not found: install the PostgreSQL client tools")
    return found


def backup(dsn: str, path: Path) -> int:
    """Write a custom-format dump of the database to `path`; return its size in bytes."""
    tmp = path.with_suffix(path.suffix + ".partial")
    r = subprocess.run([_tool("pg_dump"), "--format=custom", "--file", str(tmp), "--dbname", dsn],
                       capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise LiftwatchError(f"pg_dump failed: {r.stderr.strip()[-500:]}")
    tmp.rename(path)  # a backup file exists only once it is complete
    return path.stat().st_size


def restore(path: Path, dsn: str) -> None:
    """Restore `path` into the (new, empty) database named by `dsn`, creating it."""
    if not path.is_file():
        raise LiftwatchError(f"{path} is not a file")
    parts = urlsplit(dsn)
    dbname = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            raise LiftwatchError(f"database {dbname!r} exists; restore only into a new database ({redact(dsn)})")
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))
    with connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute("SELECT timescaledb_pre_restore()")
    r = subprocess.run([_tool("pg_restore"), "--disable-triggers", "--no-owner", "--exit-on-error",
                        "--dbname", dsn, str(path)], capture_output=True, text=True)
    with connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT timescaledb_post_restore()")
    if r.returncode != 0:
        raise LiftwatchError(f"pg_restore failed: {r.stderr.strip()[-800:]}")


def counts(dsn: str) -> dict[str, int]:
    """Row counts of the tables a restore must bring back whole."""
    with connect(dsn) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED_TABLES}  # noqa: S608
