"""The fleet simulator's pure core: determinism, contract fidelity, seqs, bad messages, visits.

No broker, no database: these run in seconds and pin down what the end-to-end tests in
test_simulator.py rely on.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from liftwatch.contract import MAX_PAYLOAD_BYTES, MODES, Topic
from liftwatch.errors import ContractError
from liftwatch.settings import Settings
from liftwatch.validate import parse_message
from simulators.bad import REASONS
from simulators.cli import fleet_cmd, technicians_cmd
from simulators.clock import LOCAL_TZ, Window, parse_duration, plan_window
from simulators.fleet import build_fleet
from simulators.messages import MessageMaker
from simulators.records import to_contract, to_payload, to_row
from simulators.runner import FleetOptions, run_fleet
from simulators.stream import FleetConfig, FleetSim
from simulators.visits import Visit, plan_visits, read_plan

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday, 18:00 in Shanghai


def _sim(seed: int = 1, units: int = 50, *, duration: float = 3600, faulty: float = 0.2, now: datetime = NOW,
         **config) -> FleetSim:
    window = plan_window(now=now, duration_s=duration, speedup=0)
    fleet = build_fleet(seed=seed, n_units=units, faulty=faulty, today=now.date())
    return FleetSim(fleet, FleetConfig(seed=seed, window=window, **config))


def _first_messages_hash(seed: int, n: int = 1000) -> str:
    sim = _sim(seed, units=200)
    maker = MessageMaker(seed=seed, window=sim.config.window, unit_ids=[u.unit_id for u in sim.fleet.units],
                         truth=sim.truth, bad_fraction=0.02)
    h = hashlib.sha256()
    for i, m in enumerate(maker.messages(sim.items())):
        if i == n:
            break
        h.update(m.topic.encode() + b"\0" + m.payload + b"\0")
    return h.hexdigest()


def test_same_seed_same_messages_other_seed_different() -> None:
    first = _first_messages_hash(42)
    assert _first_messages_hash(42) == first
    assert _first_messages_hash(43) != first


def test_payloads_are_the_contracts_and_parse_back_to_the_backfill_rows() -> None:
    """What goes over MQTT parses (with the ingestor's validator) into exactly the rows COPY writes."""
    sim = _sim(units=30, faulty=0.5, fault_scale=50.0, degradation_ramp_s=600)
    n_events = 0
    for item in sim.items():
        obj = to_contract(item)
        payload = to_payload(item, obj.to_payload()["ts"])
        assert payload == obj.to_payload()
        assert to_row(item) == obj.as_row()
        stream = "telemetry" if item[4] == "T" else "event"
        parsed = parse_message(Topic.parse(f"lift/{item[3]}/{stream}"), orjson.dumps(payload), now=NOW)
        assert [p.as_row() for p in parsed] == [obj.as_row()]
        n_events += stream == "event"
    assert n_events > 20  # the fault_scale made sure events were covered too


def test_seq_is_one_contiguous_counter_per_unit_and_no_ts_is_in_the_future() -> None:
    starts = {"SIM-00001": 1000, "SIM-00002": 7}
    sim = _sim(units=20, faulty=0.5, fault_scale=20.0, seq_start=starts)
    seqs: dict[str, list[int]] = defaultdict(list)
    last_t = 0.0
    for t, _, seq, uid, _, _ in sim.items():
        assert t >= last_t and sim.config.window.history_start <= t < sim.config.window.end <= NOW.timestamp()
        last_t = t
        seqs[uid].append(seq)
    assert len(seqs) == 20
    for uid, got in seqs.items():
        first = starts.get(uid, 0)
        assert got == list(range(first, first + len(got))), uid
    assert sim.next_seqs()["SIM-00001"] >= 1000 + len(seqs["SIM-00001"])


def test_every_bad_message_is_refused_for_its_reason() -> None:
    now = datetime.now(UTC)
    sim = _sim(units=20, now=now)
    maker = MessageMaker(seed=1, window=sim.config.window, unit_ids=[u.unit_id for u in sim.fleet.units],
                         truth=sim.truth, bad_fraction=0.2, samples_per_message=5)
    registered = {u.unit_id for u in sim.fleet.units}
    seen: Counter = Counter()
    hashes: list[str] = []
    for m in list(maker.messages(sim.items())) + list(maker.flush()):
        if m.kind != "bad":
            continue
        seen[m.reason] += 1
        hashes.append(hashlib.sha256(m.payload).hexdigest())
        topic = Topic.parse(m.topic)
        if m.reason == "unknown_unit":
            assert topic.unit_id not in registered
            continue
        if m.reason == "rate_limited":  # valid samples, but more in one message than the ingestor's burst
            samples = parse_message(topic, m.payload, now=now)
            assert len(samples) > Settings().ingest_unit_burst and len(m.payload) <= MAX_PAYLOAD_BYTES
            assert len({(s.time, s.seq) for s in samples}) == 1
            continue
        assert topic.unit_id in registered
        with pytest.raises(ContractError) as exc:
            parse_message(topic, m.payload, now=now)
        assert exc.value.reason == m.reason, (m.reason, exc.value.detail)
    assert set(seen) == {r.value for r in REASONS}
    assert [b.payload_sha256 for b in sim.truth.bad] == hashes  # the truth names each one exactly


def test_batches_keep_each_units_messages_in_seq_order() -> None:
    sim = _sim(units=20, faulty=0.5, fault_scale=50.0)
    maker = MessageMaker(seed=1, window=sim.config.window, unit_ids=[], truth=sim.truth, samples_per_message=7)
    last: dict[str, int] = {}
    rows = 0
    for m in list(maker.messages(sim.items())) + list(maker.flush()):
        doc = orjson.loads(m.payload)
        doc = doc if isinstance(doc, list) else [doc]
        assert len(doc) == m.rows and len(m.payload) < 64 * 1024
        unit = Topic.parse(m.topic).unit_id
        for d in doc:
            assert d["seq"] == last.get(unit, -1) + 1, unit
            last[unit] = d["seq"]
        rows += m.rows
    assert rows == sum(s + 1 for s in last.values())


def test_visits_put_units_in_inspection_only_when_someone_is_on_site() -> None:
    window = plan_window(now=NOW, duration_s=4 * 3600, speedup=0)
    t0 = window.live_start + 3600

    def visit(unit: str, case: str) -> Visit:
        return Visit(f"{unit}-V1", unit, "quarterly", case, "2026-11-25", t0, t0 + 3600, "SIM-MC01", "SIM-MC01-T1",
                     "SIM-UU001-SM1")

    plan = [visit("SIM-00001", "genuine"), visit("SIM-00002", "unverified"), visit("SIM-00003", "missing_countersign"),
            visit("SIM-00004", "skipped")]
    fleet = build_fleet(seed=3, n_units=4, today=NOW.date())
    for u in fleet.units:
        assert u.kind == "traction"  # the assertions below are about lifts
    sim = FleetSim(fleet, FleetConfig(seed=3, window=window, visits=plan, fault_scale=0.0))
    modes: dict[str, Counter] = defaultdict(Counter)
    seen: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for t, _, _, uid, kind, data in sim.items():
        if kind == "T" and t0 <= t < t0 + 3600:
            modes[uid][data["mode"]] += 1
            seen[uid].append((t, data["mode"]))
    for on_site in ("SIM-00001", "SIM-00003"):
        # the technician waits for a running trip to end; from then on the unit stays in inspection mode
        first = next(t for t, mode in seen[on_site] if mode == "inspection")
        assert first < t0 + 180
        assert {mode for t, mode in seen[on_site] if t >= first} == {"inspection"}
        assert modes[on_site]["inspection"] >= 40  # and it reports at least once a minute
    assert modes["SIM-00002"]["inspection"] == 0 and modes["SIM-00004"]["inspection"] == 0
    assert sum(modes["SIM-00002"].values()) > 0


def test_comm_losses_drop_exactly_their_items_and_change_nothing_else() -> None:
    """A terminal outage loses what the unit produced meanwhile (its seq counter runs on, so the
    hole is a gap); every other item is the same as in a run without outages."""
    plain = _sim(units=30, duration=3 * 86400)
    lossy = _sim(units=30, duration=3 * 86400, comm_loss_per_day=0.5)
    losses = lossy.truth.comm_losses
    assert len(losses) > 10 and not plain.truth.comm_losses
    assert all(20 * 60 <= c.end - c.start <= 4 * 86400 or c.end == lossy.config.window.end for c in losses)
    by_unit = defaultdict(list)
    for c in losses:
        by_unit[c.unit_id].append(c)
    assert all(a.end < b.start for cs in by_unit.values() for a, b in zip(cs, cs[1:], strict=False))  # merged
    kept = list(lossy.items())
    everything = list(plain.items())
    survives = [not any(c.start <= it[0] < c.end for c in by_unit.get(it[3], ())) for it in everything]
    assert not all(survives) and kept == [it for it, ok in zip(everything, survives, strict=True) if ok]
    for unit_id in by_unit:  # the seq counter kept counting: a gap where each loss was
        seqs = [it[2] for it in kept if it[3] == unit_id]
        assert len(seqs) < seqs[-1] + 1


def test_a_busy_day_has_every_mode_and_faults_come_in_pairs() -> None:
    sim = _sim(seed=5, units=60, duration=86400, faulty=0.3, fault_scale=100.0)
    modes: Counter = Counter()
    kinds: Counter = Counter()
    for _, _, _, _, kind, data in sim.items():
        if kind == "T":
            modes[data["mode"]] += 1
    for u in sim.fleet.units:
        kinds[u.kind] += 1
    assert {"normal", "inspection", "out_of_service", "fire_return", "stopped", "emergency_power"} <= set(modes)
    assert set(modes) <= MODES
    assert kinds["escalator"] > 0 and kinds["traction"] > 0
    end = sim.config.window.end
    entrapments = [f for f in sim.truth.faults if f.code == "entrapment"]
    assert entrapments, "fault_scale 100 over a day should trap somebody"
    for f in sim.truth.faults:
        assert f.cleared_at is None or f.cleared_at >= f.raised_at
        if f.cleared_at is None:
            assert f.raised_at > end - 6 * 3600  # only faults still open at the end of the window
    for f in entrapments:
        if f.cleared_at is not None:
            assert 6 * 60 <= f.cleared_at - f.raised_at <= 90 * 60  # a realistic rescue


def test_fleet_is_in_shanghai_and_prefix_stable() -> None:
    small = build_fleet(seed=9, n_units=10, today=NOW.date())
    big = build_fleet(seed=9, n_units=500, faulty=0.1, today=NOW.date())
    assert [(u.kind, u.floors, u.site.site_id) for u in small.units] == \
        [(u.kind, u.floors, u.site.site_id) for u in big.units[:10]]
    assert all(31.0 <= s.lat <= 31.4 and 121.2 <= s.lon <= 121.7 for s in big.sites)
    assert {c.kind for c in big.companies} == {"maintenance", "user_unit"}
    assert Counter(u.mechanism for u in big.units if u.mechanism)  # all five dealt
    assert len({u.mechanism for u in big.units if u.mechanism}) == 5
    assert sum(u.mechanism is not None for u in big.units) == 50
    overdue = sum(u.next_inspection_due < NOW.date() for u in big.units)
    assert 0 < overdue < 60  # some units for the inspection_overdue rule, not most


def test_window_never_reaches_into_the_future_or_past_ninety_days() -> None:
    w = plan_window(now=NOW, duration_s=3600, speedup=60)
    assert w.end == pytest.approx(NOW.timestamp() + 60)  # ends when the sped-up run ends
    assert plan_window(now=NOW, duration_s=3600, speedup=0).end == pytest.approx(NOW.timestamp())
    with pytest.raises(ValueError, match="future"):
        plan_window(now=NOW, duration_s=3600, speedup=0, start=NOW - timedelta(minutes=30))
    with pytest.raises(ValueError, match="90 days"):
        plan_window(now=NOW, duration_s=3600, speedup=0, history_s=89 * 86400)
    assert parse_duration("1.5h") == 5400 and parse_duration("90") == 90 and parse_duration("2d") == 172800
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert isinstance(w, Window)


def test_technicians_plan_matches_the_fleets_own_plan(tmp_path: Path) -> None:
    out = tmp_path / "visits.json"
    start = datetime(2026, 10, 1, tzinfo=LOCAL_TZ)
    res = CliRunner().invoke(technicians_cmd, ["--plan-only", "--days", "60", "--units", "40", "--seed", "4", "--start",
                                               start.isoformat(), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "plan only" in res.output
    plan = read_plan(out)
    fleet = build_fleet(seed=4, n_units=40, today=NOW.date())
    assert plan == plan_visits(fleet, seed=4, start=start.timestamp(), end=start.timestamp() + 60 * 86400)
    cases = Counter(v.case for v in plan)
    assert cases["genuine"] > cases["skipped"] > 0
    by_unit: dict[str, list[Visit]] = defaultdict(list)
    for v in plan:
        by_unit[v.unit_id].append(v)
    for visits in by_unit.values():  # half-monthly: signed at most 15 days apart, to the second
        for a, b in zip(visits, visits[1:], strict=False):
            gap_days = (datetime.fromisoformat(b.due_on) - datetime.fromisoformat(a.due_on)).days
            assert gap_days == 14
            assert b.end - a.end <= 15 * 86400
    assert "drives no visit over HTTP" in " ".join(CliRunner().invoke(technicians_cmd, ["--help"]).output.split())


def test_fleet_dry_run_from_the_command_line(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    res = CliRunner().invoke(fleet_cmd, ["--dry-run", "--units", "30", "--duration", "10m", "--history-days", "0.1",
                                         "--bad-fraction", "0.05", "--truth", str(truth), "--quiet"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(truth.read_bytes())
    assert doc["counts"]["history"]["telemetry_rows"] > 0 and doc["counts"]["live"]["telemetry_rows"] > 0
    assert doc["counts"]["live"]["bad_messages"] == len(doc["bad_messages"]) > 0
    assert len(doc["units"]) == 30 and sum(u["degradation"] is not None for u in doc["units"].values()) == 3
    assert "live (MQTT QoS 1)" in res.output
    assert CliRunner().invoke(fleet_cmd, ["--duration", "soon"]).exit_code == 2


def test_workers_change_nothing_but_speed(tmp_path: Path) -> None:
    """Each unit's stream is its own: split over two processes, the truth is the same."""
    docs = []
    for workers in (1, 2):
        path = tmp_path / f"truth{workers}.json"
        opts = FleetOptions(units=40, duration_s=600, speedup=0, history_s=6 * 3600, faulty=0.3, bad_fraction=0.05,
                            fault_scale=20.0, samples_per_message=3, dry_run=True, progress=False, truth_path=path,
                            workers=workers, start=NOW - timedelta(minutes=10))
        summary = run_fleet(opts, Settings(), now=NOW)
        assert summary.workers == workers
        docs.append(orjson.loads(path.read_bytes()))
    one, two = docs
    for key in ("units", "faults", "episodes", "visits", "bad_messages"):
        assert one[key] == two[key], key
    for part in ("history", "live"):
        a, b = dict(one["counts"][part]), dict(two["counts"][part])
        a.pop("seconds"), b.pop("seconds")
        assert a == b
    assert one["counts"]["live"]["bad_messages"] > 0 and one["faults"]
