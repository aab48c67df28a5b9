"""Alert lifecycle: a pass states which alerts *should* be open; reconcile makes it so.

For the kinds a pass owns, an alert that should be open and is not gets opened; one that is
open gets its severity, reason, details and last_seen_at refreshed (acknowledgement stays);
an open alert that should no longer be open is resolved. One open alert per (unit, kind) is
guaranteed by a partial unique index, so running a pass twice changes nothing but last_seen_at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class AlertSpec:
    unit_id: str
    kind: str
    severity: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    event_time: datetime | None = None


@dataclass
class ReconcileResult:
    opened: int = 0
    updated: int = 0
    resolved: int = 0


_UPSERT = """
INSERT INTO alerts AS a (unit_id, kind, severity, reason, details, source, event_time)
VALUES (%s, %s, %s, %s, %s, 'analytics', %s)
ON CONFLICT (unit_id, kind) WHERE status = 'open' DO UPDATE SET
    severity = EXCLUDED.severity, reason = EXCLUDED.reason, details = EXCLUDED.details,
    event_time = COALESCE(a.event_time, EXCLUDED.event_time), last_seen_at = now()
RETURNING (xmax = 0) AS opened"""

_RESOLVE = """
UPDATE alerts SET status = 'resolved', resolved_at = now(), last_seen_at = now(),
       details = details || %s
 WHERE status = 'open' AND kind = %s AND unit_id = %s"""


def reconcile(conn: psycopg.Connection, kinds: tuple[str, ...], desired: list[AlertSpec],
              resolution_details: dict[tuple[str, str], dict[str, Any]] | None = None) -> ReconcileResult:
    """Open/update the desired alerts of `kinds` and resolve the other open ones of those kinds."""
    result = ReconcileResult()
    wanted = {(a.unit_id, a.kind) for a in desired}
    extra = resolution_details or {}
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        for a in desired:
            assert a.kind in kinds and a.severity in SEVERITIES, a
            row = cur.execute(_UPSERT, (a.unit_id, a.kind, a.severity, a.reason, Jsonb(a.details), a.event_time)).fetchone()
            if row[0]:
                result.opened += 1
            else:
                result.updated += 1
        open_now = cur.execute("SELECT unit_id, kind FROM alerts WHERE status = 'open' AND kind = ANY(%s)",
                               (list(kinds),)).fetchall()
        for unit_id, kind in open_now:
            if (unit_id, kind) not in wanted:
                cur.execute(_RESOLVE, (Jsonb(extra.get((unit_id, kind), {})), kind, unit_id))
                result.resolved += 1
    return result
