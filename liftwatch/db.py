"""Database connections and the migration runner.

Migrations are numbered plain SQL files in liftwatch/migrations (`0001_registry.sql`, ...).
Each is applied once, in its own transaction, under an advisory lock so that two processes
migrating at the same time serialise instead of racing. A migration that has landed is never
edited: the runner stores each file's SHA-256 and refuses to continue if one has changed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from liftwatch.errors import ConfigurationError, MigrationError

log = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x4C49_4654  # "LIFT": one advisory-lock key for every migrating process
INSTALL_HINT = "run `sudo scripts/install-timescaledb.sh` (builds and preloads TimescaleDB), then retry"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    """Open a connection with a message that says what to do when the server is not there."""
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        raise ConfigurationError(
            f"cannot connect to PostgreSQL at {redact(dsn)}: {str(exc).strip()}\n"
            "Is the server running (pg_lsclusters) and LIFTWATCH_DATABASE_URL right?"
        ) from exc


def open_pool(dsn: str, *, max_size: int, application_name: str) -> ConnectionPool:
    """An opened pool of autocommit connections (waits up to 30 s for the server), for a web app's lifespan."""
    pool = ConnectionPool(dsn, min_size=1, max_size=max_size,
                          kwargs={"autocommit": True, "application_name": application_name}, open=False)
    pool.open(wait=True, timeout=30)
    return pool


def redact(dsn: str) -> str:
    """The DSN with its password replaced, for messages and logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def load_migrations() -> list[Migration]:
    """The migration files shipped in the package, in version order."""
    found = []
    for entry in resources.files("liftwatch.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version number: {versions}")
    return found


def ensure_database(dsn: str) -> bool:
    """Create the database named in the DSN if it does not exist; True when it was created."""
    parts = urlsplit(dsn)
    dbname = parts.path.lstrip("/")
    if not dbname:
        raise ConfigurationError(f"LIFTWATCH_DATABASE_URL names no database: {redact(dsn)}")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with connect(admin, autocommit=True) as conn:
        # the lock makes check-then-create atomic against other migrating processes
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        log.info("created database %s", dbname)
        return True


def _check_timescaledb(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        raise MigrationError(
            "the timescaledb extension is not installed on this PostgreSQL server; " + INSTALL_HINT
        )
    preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
    if "timescaledb" not in preload:
        raise MigrationError(
            "timescaledb is installed but not in shared_preload_libraries "
            f"(currently {preload!r}); " + INSTALL_HINT
        )


def migrate(dsn: str, *, create_database: bool = True) -> list[Migration]:
    """Apply every pending migration; return the ones applied. Safe to run twice and concurrently."""
    if create_database:
        ensure_database(dsn)
    migrations = load_migrations()
    applied_now: list[Migration] = []
    with connect(dsn, autocommit=True) as conn:
        _check_timescaledb(conn)
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                v: c for v, c in conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            }
            for mig in migrations:
                if mig.version in done:
                    if done[mig.version] != mig.checksum:
                        raise MigrationError(
                            f"migration {mig.version:04d}_{mig.name}.sql was edited after it was applied; "
                            "landed migrations are immutable — add a new numbered file instead"
                        )
                    continue
                log.info("applying migration %04d_%s", mig.version, mig.name)
                with conn.transaction():
                    conn.execute(mig.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, mig.checksum),
                    )
                applied_now.append(mig)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


def applied_versions(conn: psycopg.Connection) -> list[int]:
    """Versions recorded in schema_migrations (empty before the first migrate)."""
    if not conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]:
        return []
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
