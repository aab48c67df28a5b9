"""Maintenance visits of the past, through the real maintenance code, at the truth's times.

The API stamps check-ins and refuses signatures more than 5 minutes off its clock, so 60 days
of visits cannot be driven over HTTP (docs/simulator.md). The recorder calls the very
functions the API routes call (`create_order`, `check_in`, `set_item`, `signing_payload`,
`sign`) with the clock seam set to the visit's planned times: every order gets its
checklist filled item by item (limits checked), a real Ed25519 signature over the RFC 8785
payload, a countersignature where the case has one, and a ledger entry that
`liftwatch ledger verify` re-checks at the end. The one shortcut: eval accounts get a cheap
argon2 hash, because two password checks per visit at production cost would take longer
than everything else in the run (the password is still checked).
"""

from __future__ import annotations

import heapq
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liftwatch import esign
from maintenance import checklist as checklists
from maintenance import workorders
from maintenance.auth import add_user
from maintenance.deps import User
from simulators.readings import entry_for
from simulators.visits import Visit

COUNTERSIGN_AFTER_S = 60.0  # the safety manager signs at check-out, a minute after the technician
SKEW = timedelta(minutes=5)
_CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # eval accounts only (see above)


@dataclass
class Signer:
    user: User
    key: Ed25519PrivateKey
    key_id: int
    password: str


@dataclass
class RecorderCounts:
    checked_in: int = 0
    signed: int = 0
    countersigned: int = 0
    skipped: int = 0
    items: int = 0
    defects: int = 0


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class Recorder:
    """Turns the plan's visits into work orders as time advances (`advance(until)`)."""

    def __init__(self, conn: psycopg.Connection, *, seed: int, visits: list[Visit], units: dict[str, Any]) -> None:
        self.conn = conn  # dict rows, autocommit
        self.seed = seed
        self.units = units  # unit_id -> UnitSpec (site position for the check-in)
        self.counts = RecorderCounts()
        self.signers: dict[str, Signer] = {}
        self.orders: dict[str, int] = {}  # visit_id -> work order
        self._queue: list[tuple[float, int, str, Visit]] = []
        planned = {r["unit_id"] for r in conn.execute("SELECT DISTINCT unit_id FROM maintenance_plans")}
        for n, v in enumerate(visits):
            if v.unit_id not in planned:
                continue  # no statutory checklist for the unit's kind: no work orders
            if v.case == "skipped":
                self.counts.skipped += 1
                continue
            heapq.heappush(self._queue, (v.start, n, "check_in", v))
            heapq.heappush(self._queue, (v.end, n, "sign", v))
            if v.case in ("genuine", "unverified"):
                heapq.heappush(self._queue, (v.end + COUNTERSIGN_AFTER_S, n, "countersign", v))

    # --- accounts -------------------------------------------------------------------------------

    def _signer(self, role: str, company_id: str) -> Signer:
        username = f"eval-{'tech' if role == 'technician' else 'uu'}-{company_id}"
        s = self.signers.get(username)
        if s is not None:
            return s
        password = secrets.token_urlsafe(16)
        name = f"{'Technician' if role == 'technician' else 'Safety manager'} {company_id}"
        user_id, person_id = add_user(self.conn, username=username, name=name, role=role, company_id=company_id,
                                      password=password, certificate_no=f"T-{company_id}" if role == "technician" else None)
        self.conn.execute("UPDATE users SET password_hash = %s WHERE user_id = %s", (_CHEAP.hash(password), user_id))
        key = Ed25519PrivateKey.generate()
        key_id = self.conn.execute(
            "INSERT INTO signing_keys (person_id, public_key, label) VALUES (%s, %s, 'eval') RETURNING key_id",
            (person_id, esign.raw_public_key(key.public_key()))).fetchone()["key_id"]
        s = Signer(User(user_id, person_id, username, name, role, company_id), key, key_id, password)
        self.signers[username] = s
        return s

    # --- visits -----------------------------------------------------------------------------------

    def advance(self, until: float) -> None:
        """Apply every check-in, signature and countersignature planned before `until`."""
        while self._queue and self._queue[0][0] < until:
            t, _, action, v = heapq.heappop(self._queue)
            getattr(self, f"_{action}")(v, t)

    def _check_in(self, v: Visit, t: float) -> None:
        spec = self.units[v.unit_id]
        tech = self._signer("technician", spec.site.maintenance_company_id)
        wo_id = self._open_order(v)
        workorders.check_in(self.conn, tech.user, wo_id, spec.site.lat, spec.site.lon, at=_dt(t))
        cl = checklists.checklist_for(spec.kind)
        for item in cl.items_for(v.kind):
            m = item.measurement
            entry = entry_for({"code": item.code, "measurement": None if m is None else
                               {"quantity": m.quantity, "unit": m.unit, "min": m.min, "max": m.max}},
                              seed=self.seed, unit_id=v.unit_id, visit_id=v.visit_id)
            workorders.set_item(self.conn, tech.user, wo_id, item.code, result=entry.result,
                                measured_value=entry.measured_value, note=entry.note)
            self.counts.items += 1
            self.counts.defects += entry.result == "defect"
        self.orders[v.visit_id] = wo_id
        self.counts.checked_in += 1

    def _open_order(self, v: Visit) -> int:
        row = self.conn.execute(
            """SELECT w.work_order_id FROM work_orders w JOIN maintenance_plans p USING (plan_id)
                WHERE p.unit_id = %s AND p.kind = %s AND w.status = 'open'""", (v.unit_id, v.kind)).fetchone()
        if row is not None:
            return row["work_order_id"]
        plan = self.conn.execute("SELECT plan_id, checklist_id FROM maintenance_plans WHERE unit_id = %s AND kind = %s",
                                 (v.unit_id, v.kind)).fetchone()
        with self.conn.transaction():
            return workorders.create_order(self.conn, unit_id=v.unit_id, kind=v.kind, due_on=date.fromisoformat(v.due_on),
                                           plan_id=plan["plan_id"], checklist_id=plan["checklist_id"])

    def _sign_as(self, s: Signer, wo_id: int, t: float) -> None:
        payload = workorders.signing_payload(self.conn, s.user, wo_id)["payload"]
        payload["signed_at"] = esign.timestamp(_dt(t))
        workorders.sign(self.conn, s.user, wo_id, payload=payload, signature_b64=esign.b64url(esign.sign(s.key, payload)),
                        key_id=s.key_id, password=s.password, skew=SKEW, now=_dt(t))

    def _sign(self, v: Visit, t: float) -> None:
        tech = self._signer("technician", self.units[v.unit_id].site.maintenance_company_id)
        self._sign_as(tech, self.orders[v.visit_id], t)
        self.counts.signed += 1

    def _countersign(self, v: Visit, t: float) -> None:
        manager = self._signer("user_unit", self.units[v.unit_id].site.user_unit_id)
        self._sign_as(manager, self.orders[v.visit_id], t)
        self.counts.countersigned += 1
