"""anomaly_prone on hand-made daily rollups: the degraded unit is flagged for the right reason."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
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
    assert rows["EL-07"]["anomaly_reasons"][0]["feature"].startswith("door_")  # door faults or door closing time
    assert rows["EL-21"]["anomaly_reasons"][0]["feature"].startswith("vibration")
    reason = alerts["EL-07"]["reason"]
    assert "door closing" in reason and "slower than its own baseline" in reason
    assert "door faults in 28 days against 0.5 expected from its peers" in reason, reason
    if scorer == "robust_z":  # the directional scorer raises no false alarm on this fleet
        assert set(alerts) == {"EL-07", "EL-21"}


def test_units_are_compared_with_enough_peers_or_only_with_their_own_past() -> None:
    """A kind with fewer than MIN_PEERS assessed units joins its family; a family that small has no
    peers at all, and then only the changes against the unit's own past may flag it."""
    kinds = ["traction"] * 30 + ["hydraulic"] * 4 + ["escalator"] * 6 + ["moving_walk"] * 2
    f = pd.DataFrame({"unit_id": [f"U{i}" for i in range(len(kinds))], "unit_kind": kinds})
    for col in anomaly.FEATURES:
        f[col] = 1.0
    groups = anomaly.peer_groups(f)
    assert groups.value_counts().to_dict() == {"traction": 30, "family:lifts": 4, anomaly.ALONE: 8}
    f.loc[f["unit_kind"] == "escalator", "fault_rate"] = 30.0  # escalators count faults per start:
    f.loc[f.index[-1], "fault_rate"] = 90.0  # no lift is a baseline for that
    f.loc[f.index[-2], "vibration_change"] = 2.0  # but tripling its own vibration counts anywhere
    z = anomaly.robust_z(f)
    flagged = anomaly.score_robust_z(z).flagged
    assert list(f.loc[flagged, "unit_id"]) == [f"U{len(kinds) - 2}"]
    assert (z.loc[groups == anomaly.ALONE, sorted(anomaly.PEER_FEATURES)] == 0).all().all()
    f.loc[0, "door_close_level"] = 5000.0  # a traction lift among 30 is judged by its level too
    assert anomaly.score_robust_z(anomaly.robust_z(f)).flagged[0]


def test_fault_counts_are_judged_as_counts_against_the_peers_rate() -> None:
    """Small counts have heavy tails: 8 faults where peers have 3.5 happens to 1 unit in 100 by
    chance, 30 does not. Scored by the Poisson tail at the peers' rate, not by a robust z."""
    rng = random.Random(5)
    counts = [sum(rng.random() < 3.5 / 200 for _ in range(200)) for _ in range(40)]  # ~Poisson(3.5)
    counts[0], counts[1] = 8, 30
    f = pd.DataFrame({"unit_id": [f"ES-{i}" for i in range(40)], "unit_kind": "escalator", "exposure": 100.0})
    for col in anomaly.FEATURES:
        f[col] = 0.0
    f["fault_rate"] = [c * 1000 / 100 for c in counts]  # per 1,000 trips of exposure
    z = anomaly.robust_z(f)
    assert z.at[0, "fault_rate"] < 3 < 4 < z.at[1, "fault_rate"]
    flagged = anomaly.score_robust_z(z).flagged
    assert not flagged[0] and flagged[1]
    typical = anomaly.peer_typical(f)
    reasons = anomaly.explain(f, z, 1, typical.loc["escalator"])
    assert re.fullmatch(r"30 fault events in 28 days against [23]\.\d expected from its peers", reasons[0]["text"])
