"""Maintenance visits of the past, recorded through the same functions the API routes call.

The API stamps check-ins with its own clock and refuses a signature more than 5 minutes off
it, so a history of visits cannot be driven over HTTP. A replay calls `create_order`,
`check_in`, `set_item`, `signing_payload` and `sign` directly with the clock seam set to each
visit's planned times: every order gets its checklist filled item by item (limits checked),
a real Ed25519 signature over the RFC 8785 payload, a countersignature where the case has
one, and a ledger entry that `liftwatch ledger verify` re-checks.

Who uses it: the analytics evaluation (bench/evalkit) and `liftwatch simulate past-visits`
for `make demo`. Both are simulations; back-dating signatures is what an e-signature system
must never do with real records, so the command refuses to run outside development.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liftwatch import esign
from maintenance import checklist as checklists
from maintenance import workorders
from maintenance.deps import User

COUNTERSIGN_AFTER = timedelta(seconds=60)  # the safety manager signs at check-out, a minute after the technician
SKEW = timedelta(minutes=5)
CASES = ("genuine", "unverified", "missing_countersign", "skipped")


@dataclass(frozen=True, slots=True)
class PastVisit:
    """One planned visit: `case` says what happens (skipped: nothing; missing_countersign: no
    countersignature; genuine and unverified look the same here, the telemetry differs)."""

    visit_id: str
    unit_id: str
    kind: str
    case: str
    due_on: date
    start: datetime  # check-in
    end: datetime  # the technician's signature
    maintenance_company_id: str
    user_unit_id: str
    lat: float | None = None
    lon: float | None = None


@dataclass
class Signer:
    user: User
    key: Ed25519PrivateKey
    key_id: int
    password: str


class ItemEntry(Protocol):
    result: str
    measured_value: float | None
    note: str


#: (visit, item) -> what the technician records for it
EntryFn = Callable[[PastVisit, checklists.Item], ItemEntry]
#: (role, company_id) -> who signs for that company
SignerFn = Callable[[str, str], Signer]


@dataclass
class ReplayCounts:
    checked_in: int = 0
    signed: int = 0
    countersigned: int = 0
    skipped: int = 0
    items: int = 0
    defects: int = 0


class PastVisitRecorder:
    """Turns planned visits into signed work orders as simulated time advances (`advance(until)`)."""

    def __init__(self, conn: psycopg.Connection, visits: Iterable[PastVisit], *, signer: SignerFn,
                 entry: EntryFn) -> None:
        self.conn = conn  # dict rows, autocommit
        self.signer = signer
        self.entry = entry
        self.counts = ReplayCounts()
        self.orders: dict[str, int] = {}  # visit_id -> work order
        self._queue: list[tuple[datetime, int, str, PastVisit]] = []
        self._kinds = {r["unit_id"]: r["kind"] for r in conn.execute(
            "SELECT u.unit_id, u.kind FROM units u WHERE EXISTS (SELECT 1 FROM maintenance_plans p "
            "WHERE p.unit_id = u.unit_id)")}
        for n, v in enumerate(visits):
            if v.unit_id not in self._kinds:
                continue  # no plans (not in service): no work orders
            if v.case not in CASES:
                raise ValueError(f"visit {v.visit_id}: unknown case {v.case!r}")
            if v.case == "skipped":
                self.counts.skipped += 1
                continue
            heapq.heappush(self._queue, (v.start, n, "check_in", v))
            heapq.heappush(self._queue, (v.end, n, "sign", v))
            if v.case != "missing_countersign":
                heapq.heappush(self._queue, (v.end + COUNTERSIGN_AFTER, n, "countersign", v))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def advance(self, until: datetime) -> None:
        """Apply every check-in, signature and countersignature planned before `until`."""
        while self._queue and self._queue[0][0] < until:
            t, _, action, v = heapq.heappop(self._queue)
            getattr(self, f"_{action}")(v, t)

    def _check_in(self, v: PastVisit, t: datetime) -> None:
        tech = self.signer("technician", v.maintenance_company_id)
        wo_id = self._open_order(v)
        workorders.check_in(self.conn, tech.user, wo_id, v.lat, v.lon, at=t)
        cl = checklists.checklist_for(self._kinds[v.unit_id])
        assert cl is not None
        for item in cl.items_for(v.kind):
            e = self.entry(v, item)
            workorders.set_item(self.conn, tech.user, wo_id, item.code, result=e.result,
                                measured_value=e.measured_value, note=e.note)
            self.counts.items += 1
            self.counts.defects += e.result == "defect"
        self.orders[v.visit_id] = wo_id
        self.counts.checked_in += 1

    def _open_order(self, v: PastVisit) -> int:
        row = self.conn.execute(
            """SELECT w.work_order_id FROM work_orders w JOIN maintenance_plans p USING (plan_id)
                WHERE p.unit_id = %s AND p.kind = %s AND w.status = 'open'""", (v.unit_id, v.kind)).fetchone()
        if row is not None:
            return row["work_order_id"]
        plan = self.conn.execute("SELECT plan_id, checklist_id FROM maintenance_plans WHERE unit_id = %s AND kind = %s",
                                 (v.unit_id, v.kind)).fetchone()
        with self.conn.transaction():
            return workorders.create_order(self.conn, unit_id=v.unit_id, kind=v.kind, due_on=v.due_on,
                                           plan_id=plan["plan_id"], checklist_id=plan["checklist_id"])

    def _sign_as(self, s: Signer, wo_id: int, t: datetime) -> None:
        payload = workorders.signing_payload(self.conn, s.user, wo_id)["payload"]
        payload["signed_at"] = esign.timestamp(t)
        workorders.sign(self.conn, s.user, wo_id, payload=payload, signature_b64=esign.b64url(esign.sign(s.key, payload)),
                        key_id=s.key_id, password=s.password, skew=SKEW, now=t)

    def _sign(self, v: PastVisit, t: datetime) -> None:
        self._sign_as(self.signer("technician", v.maintenance_company_id), self.orders[v.visit_id], t)
        self.counts.signed += 1

    def _countersign(self, v: PastVisit, t: datetime) -> None:
        self._sign_as(self.signer("user_unit", v.user_unit_id), self.orders[v.visit_id], t)
        self.counts.countersigned += 1
