"""The analytics against the simulator's ground truth, end to end, on a small fleet.

The same harness as bench/analytics_eval.py (which runs it at 2,000 units x 60 days): a
fleet replayed step by step into the real database, visits signed through the real
maintenance code at their own times, one real analytics pass per step, and the open alerts
compared after every pass with an oracle that knows only the truth. Hand-made boundary tests
(test_analytics_rules.py) check each rule; this checks that they add up on realistic data
(it is how the retention bug, which dropped data the rules still needed, was found).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.evalkit import scorers
from bench.evalkit.oracle import RULE_KINDS
from bench.evalkit.replay import ReplayConfig, replay


@pytest.mark.slow
def test_every_alert_kind_matches_the_truth_on_a_replayed_fleet(db_url: str) -> None:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(minutes=7)
    cfg = ReplayConfig(units=30, days=34, seed=21, faulty=0.2, comm_loss_per_day=0.1, step_h=23, retention_days=31,
                       prefix="TR")
    result = replay(db_url, cfg, end)
    scores = {k: s.as_json() for k, s in result.scores.items()}
    for kind in RULE_KINDS:  # every rule: no false alert and no miss at any of the 36 instants (retention dropping
        # raw chunks from day 31 on)
        a = scores[kind]["alert_instants"]
        assert (a["fp"], a["fn"]) == (0, 0), (kind, scores[kind])
    exercised = {k for k in RULE_KINDS if scores[k]["alert_instants"]["tp"] > 0}
    # the seed's plan has 4+ skipped, unverified and countersign cases; ~100 outages; a unit with an
    # intermittent safety circuit (registry dates move with the date, so inspection alerts may not occur)
    assert exercised >= {"maintenance_overdue", "maintenance_due_soon", "countersign_missing", "unverified_visit",
                         "offline", "frequent_faults"}, exercised
    anomaly = scores["anomaly_prone"]["alert_instants"]
    assert anomaly["tp"] > 0 and anomaly["fp"] == 0 and anomaly["fn"] == 0, scores["anomaly_prone"]
    assert scorers.compare(result.anomaly_rows, ("robust_z",))["robust_z"]["recall"] == 1.0
    assert result.ledger["ok"] and result.ledger["entries"] == result.recorder["signed"] + result.recorder["countersigned"]
    assert result.recorder["signed"] > 20 and result.recorder["skipped"] > 0


@pytest.mark.slow
def test_every_unit_kind_under_its_own_annex_matches_the_truth(db_url: str) -> None:
    """Seed 37 deals all five unit kinds (19 traction, 8 escalators, a moving walk, a hydraulic lift,
    a dumbwaiter): each kind's visits go through its own checklist, and every maintenance rule is
    scored per unit kind."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(minutes=7)
    cfg = ReplayConfig(units=30, days=34, seed=37, faulty=0.2, comm_loss_per_day=0.1, step_h=23, retention_days=31,
                       prefix="TK")
    result = replay(db_url, cfg, end)
    assert set(result.fleet_summary["kinds"]) == {"traction", "hydraulic", "dumbwaiter", "escalator", "moving_walk"}
    for kind in RULE_KINDS:
        a = result.scores[kind].as_json()["alert_instants"]
        assert (a["fp"], a["fn"]) == (0, 0), (kind, a)
    for rule, per_kind in result.by_unit_kind.items():
        for unit_kind, s in per_kind.items():
            assert (s.fp, s.fn) == (0, 0), (rule, unit_kind, s.as_json())
    tps = {rule: {k: s.tp for k, s in per.items()} for rule, per in result.by_unit_kind.items()}
    assert all(tp > 0 for tp in tps["maintenance_due_soon"].values()), tps  # every kind's plans run
    # records of the other annexes raise alerts too (this seed: countersign and unverified on escalators)
    assert sum(tps[r][k] for r in ("maintenance_overdue", "countersign_missing", "unverified_visit")
               for k in tps[r] if k != "traction") > 0, tps
    assert result.ledger["ok"] and result.ledger["entries"] == result.recorder["signed"] + result.recorder["countersigned"]
