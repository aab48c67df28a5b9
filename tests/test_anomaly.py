"""anomaly_prone on hand-made daily rollups: the degraded unit is flagged for the right reason."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from helpers import register_units
from psycopg.rows import dict_row

from analytics import anomaly

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def _daily(db: psycopg.Connection, units: list[str], drift: dict[str, tuple[str, float]]) -> None:
    rnd = random.Random(3)
    rows = []
    start = (NOW - timedelta(days=28)).replace(hour=0)
    for u in units:
        base_dc, base_vib = rnd.gauss(3100, 100), rnd.gauss(12, 1.5)
        for d in range(28):
            dc, vib, faults = base_dc * rnd.gauss(1, 0.02), base_vib * rnd.gauss(1, 0.05), {}
            col, per_day = drift.get(u, ("", 0.0))
            if col == "door" and d >= 10:
                dc *= 1 + per_day * (d - 10)
                faults = {"door_close_fault": d // 6}
            if col == "vibration" and d >= 10:
                vib *= 1 + per_day * (d - 10)
            rows.append((u, start + timedelta(days=d), 400, 400, 400, dc, dc * 1.1, 2.0, 4.0, vib, vib * 1.3,
                         55.0, psycopg.types.json.Jsonb({"normal": 86000}), psycopg.types.json.Jsonb(faults)))
    with db.cursor() as cur:
        cur.executemany(
            """INSERT INTO unit_daily (unit_id, bucket, samples, trips, door_cycles, door_close_ms_mean, door_close_ms_p95,
                   leveling_abs_mean, leveling_abs_max, vibration_mean, vibration_p95, motor_temp_max, mode_seconds, faults)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""", rows)


@pytest.mark.parametrize("scorer", sorted(anomaly.SCORERS))
def test_degraded_units_are_flagged_with_the_right_top_feature(db_url: str, scorer: str) -> None:
    units = [f"EL-{i:02d}" for i in range(40)]
    register_units(db_url, units)
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as db:
        _daily(db, units, {"EL-07": ("door", 0.025), "EL-21": ("vibration", 0.05)})
        anomaly.assess(db, now=NOW, scorer=scorer)
        rows = {r["unit_id"]: r for r in db.execute("SELECT * FROM unit_assessments")}
        alerts = {a["unit_id"]: a for a in db.execute("SELECT unit_id, reason, details FROM alerts WHERE kind = 'anomaly_prone'")}
    assert len(rows) == 40
    assert {"EL-07", "EL-21"} <= set(alerts)
    assert rows["EL-07"]["anomaly_reasons"][0]["feature"].startswith("door_close")
    assert rows["EL-21"]["anomaly_reasons"][0]["feature"].startswith("vibration")
    assert "door closing" in alerts["EL-07"]["reason"] and "slower than its own baseline" in alerts["EL-07"]["reason"]
    if scorer == "robust_z":  # the directional scorer raises no false alarm on this fleet
        assert set(alerts) == {"EL-07", "EL-21"}
