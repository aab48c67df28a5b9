"""Backup -> restore into a fresh cluster -> ledger verifies, row counts equal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from api_support import build_world
from helpers import count

from liftwatch.throwaway import PgCluster


def test_backup_and_restore_into_a_fresh_cluster(db_url: str, tmp_path: Path) -> None:
    w, client = build_world(db_url)
    with client:
        client.post("/api/v1/maintenance/schedule", headers=w.h("admin"))
        wo = w.order()["work_order_id"]
        client.post(f"/api/v1/work-orders/{wo}/check-in", headers=w.h("tech1"), json={})
        w.fill(wo)
        assert w.sign(wo, "tech1")[0] == 201
        assert w.sign(wo, "uu1")[0] == 201
    w.sql("INSERT INTO telemetry (time, unit_id, seq, mode) SELECT now() - i * interval '1 minute', 'EL-1', i, 'normal' "
          "FROM generate_series(1, 5000) i")
    dump = tmp_path / "liftwatch.dump"
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": db_url}
    r = subprocess.run([sys.executable, "-m", "liftwatch", "db", "backup", str(dump)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    manifest = json.loads(dump.with_name(dump.name + ".counts.json").read_text())
    assert manifest["telemetry"] == 5000 and manifest["ledger"] == 2
    fresh = PgCluster().init().start()
    try:
        target = fresh.dsn("restored")
        r = subprocess.run([sys.executable, "-m", "liftwatch", "db", "restore", str(dump), "--into", target],
                           env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "counts match, ledger OK (2 entries)" in r.stdout
        assert count(target, "SELECT count(*) FROM timescaledb_information.hypertables") == 2
        # the restored schema still refuses to alter signed records
        with pytest.raises(Exception, match="immutable"):
            count(target, "WITH d AS (DELETE FROM ledger RETURNING 1) SELECT count(*) FROM d")
        # restoring over an existing database is refused
        r = subprocess.run([sys.executable, "-m", "liftwatch", "db", "restore", str(dump), "--into", target],
                           env=env, capture_output=True, text=True)
        assert r.returncode == 1 and "exists" in r.stderr
    finally:
        fresh.destroy()
