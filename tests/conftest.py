"""Real services for every test: a throwaway TimescaleDB cluster and a throwaway Mosquitto.

LIFTWATCH_TEST_DATABASE_URL, when set, points the tests at an existing server instead of a
throwaway cluster (tests that stop the database are then skipped). Each test gets a fresh
database cloned from a migrated template, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from liftwatch import db as dbmod
from liftwatch.settings import get_settings
from liftwatch.throwaway import Mosquitto, PgCluster

TEMPLATE_DB = "liftwatch_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster | None]:
    if os.environ.get("LIFTWATCH_TEST_DATABASE_URL"):
        yield None
        return
    cluster = PgCluster().init().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def server_dsn(pg_cluster: PgCluster | None) -> str:
    """A DSN to the server's maintenance database (any database name works as a base)."""
    if pg_cluster is None:
        return os.environ["LIFTWATCH_TEST_DATABASE_URL"]
    return pg_cluster.dsn("postgres")


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def template_dsn(server_dsn: str) -> str:
    dsn = _with_db(server_dsn, TEMPLATE_DB)
    with psycopg.connect(_with_db(server_dsn, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE_DB,)).fetchone():
            conn.execute(f'ALTER DATABASE "{TEMPLATE_DB}" WITH IS_TEMPLATE false')
            conn.execute(f'DROP DATABASE "{TEMPLATE_DB}" WITH (FORCE)')
    dbmod.migrate(dsn)
    # TimescaleDB's background-worker launcher connects to every database with the extension;
    # a template that allows no connections is skipped, so CREATE DATABASE ... TEMPLATE never
    # finds it "being accessed by other users".
    with psycopg.connect(_with_db(server_dsn, "postgres"), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{TEMPLATE_DB}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (TEMPLATE_DB,))
    return dsn


@pytest.fixture()
def db_url(server_dsn: str, template_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, migrated database for this test; LIFTWATCH_DATABASE_URL points at it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _with_db(server_dsn, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    url = _with_db(server_dsn, name)
    monkeypatch.setenv("LIFTWATCH_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    """One broker for the session; tests keep apart by using their own unit ids."""
    b = Mosquitto().start()
    try:
        yield b
    finally:
        b.destroy()


@pytest.fixture()
def own_broker() -> Iterator[Mosquitto]:
    """A broker this test may stop and restart."""
    b = Mosquitto().start()
    try:
        yield b
    finally:
        b.destroy()


@pytest.fixture()
def mqtt_url(broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LIFTWATCH_MQTT_URL", broker.url)
    get_settings.cache_clear()
    return broker.url
