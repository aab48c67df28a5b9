"""anomaly_prone: which units drift away from their own past and from their peers.

load_features (SQL over unit_daily, one row per unit) -> standardise (robust z per unit
kind) -> score (a model) -> explain (top features in plain words) -> alerts.

Two scorers are kept so they can be compared on the simulator's ground truth
(bench/analytics_eval.py): `robust_z`, the largest harmful-direction robust z-score of a
unit's features, and `isolation_forest` (scikit-learn, random_state pinned). The default is
the one that scored better there; see docs/analytics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from analytics.alerts import AlertSpec, ReconcileResult, reconcile

RANDOM_STATE = 0
WINDOW_DAYS = 28
EDGE_DAYS = 7  # baseline = first EDGE_DAYS of the window, recent = last EDGE_DAYS
MIN_DAYS = 10  # fewer days of data than this: no assessment

# feature -> (plain-language name, harmful direction (+1: higher is worse), smallest spread that
# counts as a real difference — without it a fleet where almost nobody has faults would make
# one fault look infinitely unusual). *_change and *_slope compare a unit with its own past;
# *_level compares its last week with its peers of the same kind, which is what still shows
# once a unit has been worn for longer than the window (its own past is worn too).
FEATURES: dict[str, tuple[str, int, float]] = {
    "door_close_change": ("door closing time", +1, 0.03),
    "door_close_slope": ("door closing time trend", +1, 0.002),
    "door_close_level": ("door closing time", +1, 60.0),  # ms
    "door_reopen_rate": ("door reopens", +1, 0.01),  # reopens per close
    "vibration_change": ("ride vibration", +1, 0.05),
    "vibration_slope": ("vibration trend", +1, 0.003),
    "vibration_level": ("ride vibration", +1, 0.8),  # mg
    "leveling_change": ("landing stop error", +1, 0.10),
    "leveling_slope": ("stop error trend", +1, 0.01),
    "leveling_level": ("landing stop error", +1, 0.3),  # mm
    "temp_change": ("motor temperature", +1, 0.03),
    "temp_level": ("daily peak motor temperature", +1, 1.5),  # degC
    "temp_rest_level": ("motor temperature at rest", +1, 1.0),  # degC: the day's coolest reading
    "fault_rate": ("fault events per 1,000 trips", +1, 1.0),
    "door_fault_rate": ("door faults per 1,000 trips", +1, 1.0),
    "safety_fault_rate": ("safety-circuit and overtravel faults per 1,000 trips", +1, 0.5),
}
LEVEL_UNITS = {"door_close_level": ("s", 0.001, 1), "vibration_level": ("mg", 1.0, 0), "leveling_level": ("mm", 1.0, 1),
               "temp_level": ("°C", 1.0, 0), "temp_rest_level": ("°C", 1.0, 0)}  # feature -> (unit shown, scale from stored unit, decimals)

FEATURES_SQL = """
WITH d AS (
    SELECT d.*, u.kind AS unit_kind,
           extract(epoch FROM d.bucket - %(from)s) / 86400.0 AS day,
           (SELECT COALESCE(sum(v::int), 0) FROM jsonb_each_text(d.faults) f(k, v)
             WHERE k NOT IN ('alarm_button', 'power_failure')) AS faults_all,  -- people and the grid, not the unit
           (SELECT COALESCE(sum(v::int), 0) FROM jsonb_each_text(d.faults) f(k, v)
             WHERE k IN ('door_close_fault', 'door_open_fault', 'door_lock_fault')) AS faults_door,
           (SELECT COALESCE(sum(v::int), 0) FROM jsonb_each_text(d.faults) f(k, v)
             WHERE k IN ('safety_circuit_break', 'overtravel_top', 'overtravel_bottom', 'brake_fault')) AS faults_safety
      FROM unit_daily d JOIN units u USING (unit_id)
     WHERE d.bucket >= %(from)s AND d.bucket < %(to)s AND u.status = 'in_service'
       AND (%(units)s::text[] IS NULL OR d.unit_id = ANY(%(units)s))
)
SELECT unit_id, min(unit_kind) AS unit_kind, count(*) AS days,
       avg(door_close_ms_mean) FILTER (WHERE day < %(edge)s) AS dc_base,
       avg(door_close_ms_mean) FILTER (WHERE day >= %(window)s - %(edge)s) AS dc_recent,
       regr_slope(door_close_ms_mean, day) AS dc_slope,
       avg(vibration_mean) FILTER (WHERE day < %(edge)s) AS vib_base,
       avg(vibration_mean) FILTER (WHERE day >= %(window)s - %(edge)s) AS vib_recent,
       regr_slope(vibration_mean, day) AS vib_slope,
       avg(leveling_abs_mean) FILTER (WHERE day < %(edge)s) AS lev_base,
       avg(leveling_abs_mean) FILTER (WHERE day >= %(window)s - %(edge)s) AS lev_recent,
       regr_slope(leveling_abs_mean, day) AS lev_slope,
       avg(motor_temp_max) FILTER (WHERE day < %(edge)s) AS temp_base,
       avg(motor_temp_max) FILTER (WHERE day >= %(window)s - %(edge)s) AS temp_recent,
       avg(motor_temp_min) FILTER (WHERE day >= %(window)s - %(edge)s) AS temp_rest_recent,
       sum(door_reopens) FILTER (WHERE day >= %(window)s - %(edge)s) AS reopens_recent,
       sum(door_cycles) FILTER (WHERE day >= %(window)s - %(edge)s) AS cycles_recent,
       sum(trips) AS trips, sum(faults_all) AS faults_all, sum(faults_door) AS faults_door,
       sum(faults_safety) AS faults_safety
  FROM d GROUP BY unit_id HAVING count(*) >= %(min_days)s"""


def window_end(now: datetime) -> datetime:
    """End of the feature window: the start of `now`'s day. Only complete days count: at 01:00
    today's mean would come from one night hour (and a complete day never changes again)."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def window_start(now: datetime, window_days: int = WINDOW_DAYS) -> datetime:
    """First day (midnight UTC, a unit_daily bucket) of the `window_days` complete days before `now`."""
    return window_end(now) - timedelta(days=window_days)


def load_aggregates(conn: psycopg.Connection, now: datetime, window_days: int = WINDOW_DAYS, *,
                    unit_ids: list[str] | None = None) -> pd.DataFrame:
    """One row per unit (all, or `unit_ids`) of window aggregates: the aggregation is SQL."""
    rows = conn.execute(FEATURES_SQL, {"from": window_start(now, window_days), "to": window_end(now), "edge": EDGE_DAYS,
                                       "window": window_days, "min_days": MIN_DAYS, "units": unit_ids}).fetchall()
    return pd.DataFrame(rows)


def load_features(conn: psycopg.Connection, now: datetime, window_days: int = WINDOW_DAYS, *,
                  unit_ids: list[str] | None = None) -> pd.DataFrame:
    """One row per unit: the aggregation is SQL; pandas only sees the result."""
    return features_from_aggregates(load_aggregates(conn, now, window_days, unit_ids=unit_ids))


def _ratio(recent: pd.Series, base: pd.Series) -> pd.Series:
    return (recent.astype(float) / base.astype(float).where(base.astype(float) > 0)) - 1.0


def features_from_aggregates(raw: pd.DataFrame) -> pd.DataFrame:
    """Relative change against the unit's own baseline, trends relative to level, fault rates."""
    if raw.empty:
        return pd.DataFrame(columns=["unit_id", "unit_kind", *FEATURES])
    f = pd.DataFrame({"unit_id": raw["unit_id"], "unit_kind": raw["unit_kind"]})
    f["door_close_change"] = _ratio(raw["dc_recent"], raw["dc_base"])
    f["door_close_slope"] = raw["dc_slope"].astype(float) / raw["dc_base"].astype(float)
    f["door_close_level"] = raw["dc_recent"].astype(float)
    cycles = raw["cycles_recent"].astype(float)
    f["door_reopen_rate"] = raw["reopens_recent"].astype(float) / cycles.where(cycles >= 50)  # too few closes: unknown
    f["vibration_level"] = raw["vib_recent"].astype(float)
    f["leveling_level"] = raw["lev_recent"].astype(float)
    f["temp_level"] = raw["temp_recent"].astype(float)
    f["temp_rest_level"] = raw["temp_rest_recent"].astype(float)
    f["vibration_change"] = _ratio(raw["vib_recent"], raw["vib_base"])
    f["vibration_slope"] = raw["vib_slope"].astype(float) / raw["vib_base"].astype(float)
    f["leveling_change"] = _ratio(raw["lev_recent"], raw["lev_base"])
    f["leveling_slope"] = raw["lev_slope"].astype(float) / raw["lev_base"].astype(float).clip(lower=0.5)
    f["temp_change"] = _ratio(raw["temp_recent"], raw["temp_base"])
    trips = raw["trips"].astype(float).clip(lower=100)  # a few trips must not make a rate explode
    f["exposure"] = trips  # not a feature: what the fault counts are counted over (see robust_z)
    f["fault_rate"] = raw["faults_all"].astype(float) * 1000 / trips
    f["door_fault_rate"] = raw["faults_door"].astype(float) * 1000 / trips
    f["safety_fault_rate"] = raw["faults_safety"].astype(float) * 1000 / trips
    return f.replace([np.inf, -np.inf], np.nan).reset_index(drop=True)


# dumbwaiters are a family of their own: goods-only cars of a few hundred kg, not peers of passenger lifts
FAMILY = {"traction": "lifts", "hydraulic": "lifts", "dumbwaiter": "dumbwaiters", "escalator": "escalators",
          "moving_walk": "escalators"}
MIN_PEERS = 10  # fewer units of a kind than this: compare them with their family, else with nobody
ALONE = "alone"  # no peer group: judged against its own past only
# fault counts per 1,000 trips of exposure: scored by their Poisson tail, not by a robust z (small
# counts have heavy tails: a healthy escalator with 8 faults where its peers have 3.5 was 4.05 robust
# sigmas out, yet a Poisson(3.5) count reaches 8 on 1 % of units)
COUNT_FEATURES = ("fault_rate", "door_fault_rate", "safety_fault_rate")
TRIM = 0.1  # the peers' rate leaves out their most faulty tenth (degraded units must not raise the bar)
MIN_EXPECTED = 0.5  # faults in the window a unit is expected to have at least (peers with none at all)
Z_CAP = 40.0
PEER_FEATURES = frozenset(c for c in FEATURES if c.endswith(("_level", "_rate")))  # meaningless without peers


def peer_groups(features: pd.DataFrame) -> pd.Series:
    """The population each unit is standardised against: its kind if the fleet has MIN_PEERS of
    them with data, else its whole family (lifts, escalators), else none (ALONE). Three moving
    walks make no baseline (one with four faults was 40 robust sigmas out), and escalators'
    fault rates per start are no baseline for lifts' rates per trip."""
    kind = features["unit_kind"].astype(str)
    family = kind.map(lambda k: FAMILY.get(k, k))
    kind_n, family_n = kind.map(kind.value_counts()), family.map(family.value_counts())
    return kind.where(kind_n >= MIN_PEERS, ("family:" + family).where(family_n >= MIN_PEERS, ALONE))


def _population(features: pd.DataFrame, group: str) -> pd.Index:
    """The units whose distribution defines a peer group (its members may be fewer). ALONE units
    take the spread of the whole fleet's changes against their own past (dimensionless)."""
    if group == ALONE:
        return features.index
    if group.startswith("family:"):
        return features.index[features["unit_kind"].map(lambda k: FAMILY.get(k, k)) == group.removeprefix("family:")]
    return features.index[features["unit_kind"] == group]


def _exposure(features: pd.DataFrame) -> pd.Series:
    """Trips the fault counts are counted over (hand-made frames without it: 1,000, rate = count)."""
    if "exposure" in features:
        return features["exposure"].astype(float)
    return pd.Series(1000.0, index=features.index)


def _peer_rate(block: pd.DataFrame, col: str) -> float:
    """The peers' pooled fault rate per 1,000 trips, their most faulty tenth left out."""
    rate = block[col].astype(float)
    keep = rate <= rate.quantile(1 - TRIM) if len(rate) >= 10 else rate.notna()
    counts = rate[keep] * _exposure(block)[keep] / 1000
    exposure = _exposure(block)[keep].sum()
    return float(counts.sum() * 1000 / exposure) if exposure > 0 else 0.0


def peer_typical(features: pd.DataFrame, groups: pd.Series | None = None) -> pd.DataFrame:
    """Per peer group, what is typical: the median of each feature, and for fault counts the
    peers' pooled rate (what "typical of its peers" and "expected from its peers" mean)."""
    groups = peer_groups(features) if groups is None else groups
    cols = list(FEATURES)
    out = {}
    for g in groups.unique():
        block = features.loc[_population(features, g)]
        typ = block[cols].astype(float).median()
        for col in COUNT_FEATURES:
            typ[col] = _peer_rate(block, col)
        out[g] = typ
    return pd.DataFrame(out).T


def _poisson_z(rate: pd.Series, exposure: pd.Series, peer_rate: float) -> pd.Series:
    """How surprising each unit's fault count is for a Poisson count at its peers' rate, as the
    z-score with the same upper-tail probability (negative when fewer than expected)."""
    from scipy.stats import norm, poisson

    count = (rate * exposure / 1000).round()
    expected = np.maximum(peer_rate * exposure / 1000, MIN_EXPECTED)
    z = norm.isf(poisson.sf(count - 1, expected))
    return pd.Series(np.clip(z, -Z_CAP, Z_CAP), index=rate.index).where(rate.notna())


def robust_z(features: pd.DataFrame) -> pd.DataFrame:
    """(x - median) / (1.4826 * MAD) against each unit's peer group; missing values count as
    typical (0), and so do peer features of a unit that has no peers."""
    cols = list(FEATURES)
    out = pd.DataFrame(index=features.index, columns=cols, dtype=float)
    floor = pd.Series({c: FEATURES[c][2] for c in cols})
    groups = peer_groups(features)
    for g, members in features.groupby(groups).groups.items():
        population = features.loc[_population(features, g)]
        ref = population[cols].astype(float)
        med = ref.median()
        mad = (ref - med).abs().median() * 1.4826
        out.loc[members, cols] = (features.loc[members, cols].astype(float) - med) / np.maximum(mad, floor)
        for col in COUNT_FEATURES:
            out.loc[members, col] = _poisson_z(features.loc[members, col].astype(float),
                                               _exposure(features).loc[members], _peer_rate(population, col))
        if g == ALONE:
            out.loc[members, sorted(PEER_FEATURES)] = 0.0
    return out.fillna(0.0)


@dataclass(frozen=True)
class Scored:
    scores: pd.Series  # higher = more anomalous
    flagged: pd.Series  # bool


def score_robust_z(z: pd.DataFrame, threshold: float = 4.0) -> Scored:
    harmful = pd.DataFrame({c: z[c] * FEATURES[c][1] for c in FEATURES})
    s = harmful.max(axis=1)
    return Scored(s, s > threshold)


def score_isolation_forest(z: pd.DataFrame, contamination: float | str = "auto") -> Scored:
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=200, contamination=contamination, random_state=RANDOM_STATE)
    x = z[list(FEATURES)].to_numpy()
    model.fit(x)
    s = pd.Series(-model.score_samples(x), index=z.index)  # higher = more anomalous
    return Scored(s, pd.Series(model.predict(x) == -1, index=z.index))


SCORERS = {"robust_z": score_robust_z, "isolation_forest": score_isolation_forest}
DEFAULT_SCORER = "robust_z"


def _signal(col: str) -> str:
    """door_close_level -> door_close; every fault rate -> faults: each signal is named once."""
    return "faults" if col.endswith("fault_rate") else col.rsplit("_", 1)[0]


def explain(features: pd.DataFrame, z: pd.DataFrame, i: int, typical: pd.Series | None = None,
            top: int = 3) -> list[dict[str, Any]]:
    """The unit's most harmful signals, each named once by its strongest feature, with a sentence
    a supervisor can act on; `typical` holds the medians of the unit's kind (for level features)."""
    # strongest first; on a tie (capped counts) the specific fault count before "fault events"
    harmful = sorted(((z.at[i, c] * FEATURES[c][1], c != "fault_rate", c) for c in FEATURES), reverse=True)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for zval, _, col in harmful:
        if zval <= 2.0 or len(out) == top:
            break
        if _signal(col) in seen:
            continue
        seen.add(_signal(col))
        typ = None if typical is None else typical.get(col)
        if col in COUNT_FEATURES:
            text = _count_sentence(col, features.at[i, col], typ, _exposure(features).at[i])
        else:
            text = _sentence(col, features.at[i, col], typ)
        change = f"{_signal(col)}_change"
        if col.endswith("_level") and change in FEATURES and z.at[i, change] > 2.0:
            text += ", " + _change_phrase(change, features.at[i, change])
        out.append({"feature": col, "z": round(float(zval), 2), "value": _round(features.at[i, col]),
                    "typical": _round(typ), "text": text})
    return out


def _round(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else round(float(v), 4)


def _count_sentence(col: str, rate: float, peer_rate: float | None, exposure: float) -> str:
    what = {"fault_rate": "fault events", "door_fault_rate": "door faults",
            "safety_fault_rate": "safety-circuit, overtravel and brake faults"}[col]
    text = f"{rate * exposure / 1000:.0f} {what} in {WINDOW_DAYS} days"
    if peer_rate is None or pd.isna(peer_rate):
        return text
    return text + f" against {max(peer_rate * exposure / 1000, MIN_EXPECTED):.1f} expected from its peers"


def _change_phrase(col: str, v: float) -> str:
    word = {"door_close_change": "slower", "vibration_change": "higher", "leveling_change": "larger",
            "temp_change": "hotter"}[col]
    return f"{abs(v) * 100:.0f} % {word if v > 0 else 'lower'} than its own baseline"


def _sentence(col: str, v: float, typical: float | None = None) -> str:
    name = FEATURES[col][0]
    if col.endswith("_change"):
        return f"{name} {_change_phrase(col, v)}"
    if col.endswith("_slope"):
        return f"{name} rising {v * 100:.1f} % of its baseline per day"
    against = "" if typical is None or pd.isna(typical) else " against {} typical of its peers"
    if col == "door_reopen_rate":
        return f"doors reopened on {v * 100:.0f} % of closes in the last week" + against.format(f"{typical * 100:.0f} %")
    if col in LEVEL_UNITS:
        unit, scale, dec = LEVEL_UNITS[col]
        return f"{name} {v * scale:.{dec}f} {unit} in the last week" + against.format(f"{typical * scale:.{dec}f} {unit}")
    return f"{v:.1f} {name} in {WINDOW_DAYS} days"


_ASSESSMENT = """
INSERT INTO unit_assessments (unit_id, assessed_at, anomaly_score, anomaly_flagged, anomaly_reasons, run_id)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (unit_id) DO UPDATE SET assessed_at = EXCLUDED.assessed_at, anomaly_score = EXCLUDED.anomaly_score,
    anomaly_flagged = EXCLUDED.anomaly_flagged, anomaly_reasons = EXCLUDED.anomaly_reasons, run_id = EXCLUDED.run_id"""


def assess(conn: psycopg.Connection, *, now: datetime, run_id: int | None = None,
           scorer: str = DEFAULT_SCORER) -> ReconcileResult:
    """Score every unit with enough data, store the assessment, reconcile anomaly_prone alerts."""
    features = load_features(conn, now)
    if features.empty:
        return reconcile(conn, ("anomaly_prone",), [])
    z = robust_z(features)
    scored = SCORERS[scorer](z)
    groups = peer_groups(features)
    typical = peer_typical(features, groups)
    alerts = []
    rows = []
    for i, unit_id in features["unit_id"].items():
        reasons = explain(features, z, i, typical.loc[groups[i]]) if scored.flagged[i] else []
        rows.append((unit_id, now, float(scored.scores[i]), bool(scored.flagged[i]), Jsonb(reasons), run_id))
        if scored.flagged[i] and reasons:
            alerts.append(AlertSpec(unit_id, "anomaly_prone", "warning", "; ".join(r["text"] for r in reasons),
                                    {"score": round(float(scored.scores[i]), 3), "scorer": scorer,
                                     "window_days": WINDOW_DAYS, "features": reasons}))
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_ASSESSMENT, rows)  # one batch (pipeline), not 20,000 round trips
    return reconcile(conn, ("anomaly_prone",), alerts)
