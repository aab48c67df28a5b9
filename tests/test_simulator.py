"""The fleet simulator end to end: real Mosquitto, a real in-process ingestor, real TimescaleDB.

The live test simulates 60 minutes of a 50-unit fleet at 600x (6 s of wall time) starting at
18:00 Shanghai time on the latest Wednesday: busy evening traffic, escalators running, and
the same traffic profile whichever week the test runs in. With a fixed seed, no visits and a
5-minute degradation ramp the run is deterministic, so each assertion below holds or fails
for a reason, not by luck.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from helpers import count, wait_until

from ingest.service import IngestOptions, Ingestor
from liftwatch.settings import Settings, get_settings
from simulators.clock import LOCAL_TZ
from simulators.runner import FleetOptions, run_fleet

MakeIngestor = Callable[[], Ingestor]
RAMP_S = 300.0


@pytest.fixture()
def ingestor(db_url: str, mqtt_url: str) -> Iterator[Ingestor]:
    group = f"g{uuid.uuid4().hex[:8]}"  # a group of this test's own: other tests' sessions stay out
    settings = Settings(database_url=db_url, mqtt_url=mqtt_url, metrics_port=0, gap_settle_s=0.5)
    ing = Ingestor(settings, IngestOptions(group, f"t-{uuid.uuid4().hex[:10]}", allow_volatile_group=True))
    ing.start()
    assert ing.wait_ready(10), "ingestor did not connect and subscribe"
    yield ing
    ing.stop()


def _last_wednesday_18h(now: datetime) -> datetime:
    d = now.astimezone(LOCAL_TZ).replace(hour=18, minute=0, second=0, microsecond=0)
    while d.weekday() != 2 or d + timedelta(hours=1) > now:
        d -= timedelta(days=1)
    return d


def _no_visits(path: Path) -> Path:
    path.write_bytes(orjson.dumps({"version": 1, "visits": []}))
    return path


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs)


def test_fifty_units_for_an_hour_through_broker_and_ingestor(
        db_url: str, mqtt_url: str, ingestor: Ingestor, tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.json"
    prefix = f"T{uuid.uuid4().hex[:6]}"
    opts = FleetOptions(units=50, duration_s=3600, speedup=600, seed=4, faulty=0.5, bad_fraction=0.02,
                        samples_per_message=1, start=_last_wednesday_18h(datetime.now(UTC)), prefix=prefix,
                        visits_file=_no_visits(tmp_path / "none.json"), degradation_ramp_s=RAMP_S,
                        truth_path=truth_path, progress=False)
    summary = run_fleet(opts, get_settings())
    assert summary.acked and not summary.interrupted
    live = summary.live
    assert live.telemetry_rows > 4000 and live.event_rows > 0 and live.bad_messages > 50

    # --- every good row arrived exactly once, every bad message was refused --------------------
    def stored() -> tuple[int, int, int]:
        return (count(db_url, "SELECT count(*) FROM telemetry"), count(db_url, "SELECT count(*) FROM events"),
                count(db_url, "SELECT count(*) FROM rejected_messages"))

    expected = (live.telemetry_rows, live.event_rows, live.bad_messages)
    wait_until(lambda: stored() >= expected, 30, what=f"{expected} rows")
    assert stored() == expected
    assert count(db_url, "SELECT count(*) FROM units WHERE unit_id LIKE %s", (prefix + "-%",)) == 50

    truth = orjson.loads(truth_path.read_bytes())
    assert truth["counts"]["live"]["telemetry_rows"] == live.telemetry_rows
    with psycopg.connect(db_url) as c:
        rejected = {bytes(h).hex(): r for h, r in c.execute("SELECT payload_sha256, reason FROM rejected_messages")}
        # bad messages take no seq of the good stream: no unit has a hole
        wait_until(lambda: c.execute("SELECT count(*) FROM unit_ingest_state WHERE ahead <> '{}'").fetchone()[0] == 0, 10)
        assert c.execute("SELECT count(*) FROM ingest_gaps").fetchone()[0] == 0
        assert c.execute("SELECT count(DISTINCT unit_id) FROM telemetry").fetchone()[0] == 50
    bad = truth["bad_messages"]
    assert {b["reason"] for b in bad} == {"invalid_json", "schema", "unknown_version", "unknown_code", "future_ts",
                                          "stale_ts", "unknown_unit", "topic_mismatch", "too_large", "rate_limited"}
    assert Counter(rejected[b["payload_sha256"]] == b["reason"] for b in bad) == Counter({True: len(bad)})

    # --- raised/cleared events match the truth's faults -----------------------------------------
    with psycopg.connect(db_url) as c:
        events = Counter(c.execute("SELECT unit_id, code, state FROM events").fetchall())
    expect_ev: Counter = Counter()
    for f in truth["faults"]:
        expect_ev[(f["unit_id"], f["code"], "raised")] += 1
        if f["cleared_seq"] is not None:
            expect_ev[(f["unit_id"], f["code"], "cleared")] += 1
    assert events == expect_ev

    _check_degradations(db_url, truth)


def _check_degradations(db_url: str, truth: dict) -> None:
    """Each degraded unit's signal moves the documented way: before its onset vs at full severity.

    Margins are about half of the documented magnitudes (docs/simulator.md), and healthy
    units split at the same moment stay flat, so a broken or reversed mechanism fails here."""
    units = truth["units"]
    with psycopg.connect(db_url) as c:
        rows = c.execute("SELECT unit_id, extract(epoch FROM time), door_close_ms, vibration_mg, abs(leveling_mm), "
                         "motor_temp_c FROM telemetry").fetchall()
        breaks = c.execute("SELECT unit_id, extract(epoch FROM time) FROM events "
                           "WHERE code = 'safety_circuit_break' AND state = 'raised'").fetchall()
    per_unit: dict[str, list[tuple]] = defaultdict(list)
    for r in rows:
        per_unit[r[0]].append(r)
    signal = {"door_operator_wear": 2, "guide_roller_wear": 3, "brake_wear": 4, "motor_overheating": 5}
    onsets = sorted(datetime.fromisoformat(u["degradation"]["onset"]).timestamp()
                    for u in units.values() if u["degradation"])
    checked: Counter = Counter()
    for uid, u in units.items():
        deg = u["degradation"]
        if deg is None:
            continue
        onset = datetime.fromisoformat(deg["onset"]).timestamp()
        full = onset + RAMP_S
        mech = deg["mechanism"]
        if mech == "intermittent_safety_circuit":
            before = sum(t < onset for unit, t in breaks if unit == uid)
            after = sum(t >= onset for unit, t in breaks if unit == uid)
            assert after > before, (uid, before, after)
            checked[mech] += 1
            continue
        col = signal[mech]
        b = [float(r[col]) for r in per_unit[uid] if r[col] is not None and float(r[1]) < onset]
        a = [float(r[col]) for r in per_unit[uid] if r[col] is not None and float(r[1]) >= full]
        assert len(b) >= 3 and len(a) >= 3, (uid, mech, len(b), len(a))  # the seed gives every unit data
        if mech == "door_operator_wear":
            assert _mean(a) > 1.3 * _mean(b), (uid, _mean(b), _mean(a))  # documented: +60 %
        elif mech == "guide_roller_wear":
            assert _mean(a) > 1.8 * _mean(b), (uid, _mean(b), _mean(a))  # documented: x3
        elif mech == "brake_wear":
            assert _mean(a) > _mean(b) + 2.0, (uid, _mean(b), _mean(a))  # documented: +6 mm
        else:
            assert _mean(a) > _mean(b) + 5.0, (uid, _mean(b), _mean(a))  # documented: +10 degC and more
        checked[mech] += 1
    assert set(checked) == set(signal) | {"intermittent_safety_circuit"} and min(checked.values()) >= 2, checked

    # controls: healthy units split at the median onset do not move like that
    split = onsets[len(onsets) // 2]
    healthy = [uid for uid, u in units.items() if u["degradation"] is None]
    for col, lo, hi in ((2, 0.95, 1.05), (3, 0.75, 1.33)):
        b = [float(r[col]) for uid in healthy for r in per_unit[uid] if r[col] is not None and float(r[1]) < split]
        a = [float(r[col]) for uid in healthy for r in per_unit[uid] if r[col] is not None and float(r[1]) >= split]
        assert lo < _mean(a) / _mean(b) < hi, (col, _mean(b), _mean(a))
    assert sum(unit in healthy for unit, _ in breaks) <= 1


def test_history_backfill_then_live_continues_the_seqs(
        db_url: str, mqtt_url: str, ingestor: Ingestor, tmp_path: Path) -> None:
    prefix = f"H{uuid.uuid4().hex[:6]}"
    opts = FleetOptions(units=20, duration_s=600, speedup=0, seed=11, faulty=0.25, history_s=86400, prefix=prefix,
                        fault_scale=20.0, truth_path=tmp_path / "truth.json", progress=False, workers=2)
    summary = run_fleet(opts, get_settings())  # two worker processes, each with its own COPY and MQTT client
    hist_tel, hist_ev = summary.history_telemetry_rows, summary.history_event_rows
    assert hist_tel > 20 * 1000 and summary.acked
    tel = hist_tel + summary.live.telemetry_rows
    ev = hist_ev + summary.live.event_rows
    wait_until(lambda: count(db_url, "SELECT count(*) FROM telemetry") >= tel
               and count(db_url, "SELECT count(*) FROM events") >= ev, 30, what=f"{tel} + {ev} rows")
    assert count(db_url, "SELECT count(*) FROM telemetry") == tel
    assert count(db_url, "SELECT count(*) FROM events") == ev
    assert count(db_url, "SELECT count(*) FROM rejected_messages") == 0
    with psycopg.connect(db_url) as c:
        # one counter per unit over telemetry and events, history and live: 0..n-1 without a hole
        holes = c.execute("""
            SELECT unit_id, count(*), min(seq), max(seq), count(DISTINCT seq) FROM (
                SELECT unit_id, seq FROM telemetry UNION ALL SELECT unit_id, seq FROM events) s
             GROUP BY unit_id HAVING count(*) <> max(seq) + 1 OR min(seq) <> 0 OR count(DISTINCT seq) <> count(*)
        """).fetchall()
        assert holes == []
        state = dict(c.execute("SELECT unit_id, next_seq FROM unit_ingest_state").fetchall())
        last = dict(c.execute("SELECT unit_id, max(seq) + 1 FROM (SELECT unit_id, seq FROM telemetry UNION ALL "
                              "SELECT unit_id, seq FROM events) s GROUP BY 1").fetchall())
        assert state == last
        assert c.execute("SELECT count(*) FROM ingest_gaps").fetchone()[0] == 0
        # backfilled rows and ingested rows look alike (the live part came through the ingestor)
        live_start = datetime.fromisoformat(orjson.loads((tmp_path / "truth.json").read_bytes())
                                            ["parameters"]["live_start"])
        kinds = c.execute("SELECT time < %s, count(*), count(motor_temp_c), count(run_count) FROM telemetry GROUP BY 1",
                          (live_start,)).fetchall()
        assert {k[0] for k in kinds} == {True, False}
        assert all(k[1] == k[2] == k[3] for k in kinds)
    # a second run continues each unit's seq where the first left off (no replay, no gap)
    opts2 = FleetOptions(units=20, duration_s=120, speedup=0, seed=11, prefix=prefix, progress=False)
    s2 = run_fleet(opts2, get_settings())
    assert s2.registered_units == 0
    total = tel + s2.live.telemetry_rows
    wait_until(lambda: count(db_url, "SELECT count(*) FROM telemetry") >= total, 30)
    with psycopg.connect(db_url) as c:
        dup = c.execute("SELECT count(*) FROM (SELECT unit_id, seq FROM telemetry UNION ALL "
                        "SELECT unit_id, seq FROM events) s GROUP BY unit_id, seq HAVING count(*) > 1").fetchall()
        assert dup == []
