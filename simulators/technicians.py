"""`liftwatch simulate technicians`: drive the planned maintenance visits through the public API.

Per visit case (simulators/visits.py):

- genuine, unverified: the technician logs in, finds the unit's open work order of the
  visit's kind, checks in with the site's position, fills every checklist item, signs
  (Ed25519 over the RFC 8785 bytes of the signing payload, password again); the user unit's
  safety manager then countersigns. (For `unverified` the fleet simulator keeps the unit out
  of inspection mode; over HTTP the two cases look the same.)
- missing_countersign: as genuine, without the countersignature.
- skipped: nothing is done; the open order is only looked up so the truth can name the
  order that will become overdue.

Time. The API stamps check-in and signature times with its own clock and refuses a
`signed_at` more than 5 minutes off it, so visits cannot be back-dated: the technicians act
now. The plan's window is laid out like the fleet's live part (it ends when the run ends on
the wall clock; `--speedup` compresses it), and each visit is driven when its planned time
has come on that clock: check-in (and the checklist) at the planned start, signatures at
the planned end (at the latest the window's end). A visit planned before the window (from a
`--visits` file) is overdue: it is driven at once, in planned order. A history of visits
therefore exists only from the moment the technicians ran; at --speedup 1 the server's times
equal the planned ones, otherwise they are the wall-clock moments the plan mapped to.
"""

from __future__ import annotations

import heapq
import math
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from liftwatch import esign
from simulators import seeds
from simulators.accounts import AccountsFile, manager_username, run_schedule, technician_username
from simulators.clock import LOCAL_OFFSET_S, Window, iso
from simulators.http_api import ApiCallError, ApiClient, CallStats, Session
from simulators.progress import Progress, sim_clock
from simulators.readings import entry_for
from simulators.visits import CASES, Visit

TRUTH_VERSION = 1
ABORT_AFTER_CONNECTION_ERRORS = 3  # consecutive visits failing without any HTTP answer: the API is gone
GPS_JITTER_DEG = 0.0002  # ~20 m: a phone's fix on site


class VisitFailed(Exception):
    """A visit could not be driven: the step and the API's error (or our own code)."""

    def __init__(self, step: str, status: int, code: str, detail: str, call: str | None = None) -> None:
        super().__init__(f"{step}: {code}: {detail}")
        self.step, self.status, self.code, self.detail, self.call = step, status, code, detail, call

    @classmethod
    def from_api(cls, step: str, exc: ApiCallError) -> VisitFailed:
        return cls(step, exc.status, exc.code, exc.detail, f"{exc.method} {exc.path}")

    def as_json(self) -> dict[str, Any]:
        return {"step": self.step, "status": self.status, "code": self.code, "detail": self.detail[:500],
                "call": self.call}


@dataclass
class VisitResult:
    visit: Visit
    # pending | done | left_open (skipped) | no_checklist | failed | not_reached
    outcome: str = "pending"
    work_order_id: int | None = None
    work_order_kind: str | None = None
    work_order_due_on: str | None = None
    resumed: bool = False  # an order this technician had checked in to earlier (an interrupted run)
    technician_username: str | None = None
    countersigner_username: str | None = None
    checked_in_at: str | None = None  # the server's time
    check_in_location: dict[str, float] | None = None
    signed_at: str | None = None  # the technician's signed_at, as signed and stored
    countersigned_at: str | None = None  # the user unit's signed_at (= closed_at)
    status: str | None = None  # the order's status after what this run did
    ledger_seqs: list[int] = field(default_factory=list)
    items: Counter = field(default_factory=Counter)
    defects: list[str] = field(default_factory=list)
    error: VisitFailed | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.visit.to_json(), "outcome": self.outcome, "work_order_id": self.work_order_id,
                "work_order_kind": self.work_order_kind, "work_order_due_on": self.work_order_due_on,
                "resumed": self.resumed, "technician_username": self.technician_username,
                "countersigner_username": self.countersigner_username, "checked_in_at": self.checked_in_at,
                "check_in_location": self.check_in_location, "signed_at": self.signed_at,
                "countersigned_at": self.countersigned_at, "status": self.status, "ledger_seqs": self.ledger_seqs,
                "items": dict(self.items), "defects": self.defects,
                "error": self.error.as_json() if self.error else None}


@dataclass
class DriveOptions:
    api_url: str
    accounts_path: Path
    window: Window  # live_start .. end; history_start unused
    speedup: float  # 0 = as fast as possible
    seed: int = 1
    dsn: str | None = None  # for `liftwatch maintenance schedule` when an order is missing
    truth_path: Path | None = None
    progress: bool = True
    parameters: dict[str, Any] = field(default_factory=dict)  # echoed into the truth


@dataclass
class DriveSummary:
    window: Window
    speedup: float
    results: list[VisitResult]
    stats: CallStats
    seconds: float
    schedule_runs: int
    logins: int
    interrupted: bool = False
    aborted: str | None = None

    @property
    def failures(self) -> list[VisitResult]:
        return [r for r in self.results if r.outcome == "failed"]

    def counts(self) -> dict[str, Any]:
        by = Counter((r.visit.case, r.outcome) for r in self.results)
        return {
            "planned": {c: sum(r.visit.case == c for r in self.results) for c in CASES},
            "done": {c: by[(c, "done")] for c in CASES if c != "skipped"},
            "skipped_left_open": by[("skipped", "left_open")],
            "no_checklist": sum(r.outcome == "no_checklist" for r in self.results),
            "failed": {c: by[(c, "failed")] for c in CASES if by[(c, "failed")]},
            "failed_by_code": dict(Counter(r.error.code for r in self.failures if r.error)),
            "not_reached": sum(r.outcome in ("pending", "not_reached") for r in self.results),
            "defects": sum(len(r.defects) for r in self.results),
        }

    def lines(self) -> list[str]:
        c = self.counts()
        w = self.window
        pace = "as fast as possible" if self.speedup == 0 else f"speedup {self.speedup:g}"
        out = [f"window: {iso(w.live_start)} .. {iso(w.end)} ({pace}); visits are driven now, "
               "when their planned time has come",
               "planned: " + ", ".join(f"{k} {v}" for k, v in c["planned"].items()),
               "done over HTTP: " + ", ".join(f"{k} {v}" for k, v in c["done"].items())
               + f"; skipped {c['skipped_left_open']} (left open, nothing done)",
               f"not driven: {c['no_checklist']} (no statutory checklist for the unit's kind), "
               f"{c['not_reached']} not reached (run ended or interrupted)",
               f"defects recorded: {c['defects']} (each opens a hazard)",
               f"API: {self.stats.calls:,} calls in {self.stats.seconds:.1f} s "
               f"({1000 * self.stats.seconds / max(self.stats.calls, 1):.1f} ms each), {self.logins} logins, "
               f"{self.schedule_runs} schedule runs; wall time {self.seconds:.1f} s"]
        fails = self.failures
        if fails:
            out.append(f"FAILED: {len(fails)} visits: " + ", ".join(f"{k} {v}" for k, v in c["failed_by_code"].items()))
            for r in fails[:20]:
                e = r.error
                assert e is not None
                out.append(f"  {r.visit.visit_id} ({r.visit.case}, {r.visit.kind}) at {e.step}: "
                           f"{'HTTP ' + str(e.status) if e.status else 'no response'} {e.code}: {e.detail[:160]}")
            if len(fails) > 20:
                out.append(f"  ... and {len(fails) - 20} more (see the truth file)")
        if self.aborted:
            out.append(f"ABORTED: {self.aborted}")
        if self.interrupted:
            out.append("interrupted: visits after that moment were not driven")
        return out


class Driver:
    """Drives visits one step at a time over one HTTP connection."""

    def __init__(self, opts: DriveOptions, accounts: AccountsFile) -> None:
        self.opts = opts
        self.accounts = accounts
        self.stats = CallStats()
        self.client = ApiClient(opts.api_url, stats=self.stats)
        self.sessions: dict[str, Session] = {}
        self.units: dict[str, dict[str, Any]] = {}
        self._checklist_kinds: set[str] | None = None
        self.schedule_runs = 0
        self.signed_since_schedule = 0
        self.scheduled_once = False

    # --- accounts -------------------------------------------------------------------------------

    def session(self, username: str, step: str) -> Session:
        s = self.sessions.get(username)
        if s is None:
            a = self.accounts.get(username)
            if a is None or not a.created:
                raise VisitFailed(step, 0, "no_account",
                                  f"no account {username} in {self.accounts.path} (run with --bootstrap)")
            s = self.sessions[username] = Session(self.client, a.username, a.password)
        return s

    def _call(self, step: str, fn, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiCallError as exc:
            raise VisitFailed.from_api(step, exc) from None

    # --- lookups ---------------------------------------------------------------------------------

    def unit(self, tech: Session, unit_id: str) -> dict[str, Any]:
        if unit_id not in self.units:
            self.units[unit_id] = self._call("unit", tech.get, f"/api/v1/units/{unit_id}")
        return self.units[unit_id]

    def checklist_kinds(self, s: Session) -> set[str]:
        """Unit kinds some published checklist applies to (from the checklists' own data)."""
        if self._checklist_kinds is None:
            kinds: set[str] = set()
            for cl in self._call("checklists", s.get, "/api/v1/checklists"):
                doc = self._call("checklists", s.get, f"/api/v1/checklists/{cl['checklist_id']}/{cl['version']}")
                kinds.update(doc.get("applies_to") or [])
            self._checklist_kinds = kinds
        return self._checklist_kinds

    def _find(self, tech: Session, v: Visit, status: str, mine: bool = False) -> dict[str, Any] | None:
        params: dict[str, Any] = {"unit_id": v.unit_id, "kind": v.kind, "status": status, "limit": 1}
        if mine:
            params["mine"] = "true"
        rows = self._call("find order", tech.get, "/api/v1/work-orders", **params)
        return rows[0] if rows else None

    def find_order(self, tech: Session, v: Visit, unit: dict[str, Any], *, resume: bool
                   ) -> tuple[dict[str, Any] | None, bool]:
        """The order to work on, and whether it is one this technician had already checked in to."""
        if resume:
            wo = self._find(tech, v, "in_progress", mine=True)
            if wo is not None:
                return wo, True
        wo = self._find(tech, v, "open")
        if (wo is None and unit["kind"] in self.checklist_kinds(tech)
                and (not self.scheduled_once or self.signed_since_schedule)):
            self.schedule()  # the plan's previous order was signed: its next one is made by `schedule`
            wo = self._find(tech, v, "open")
        return wo, False

    def schedule(self) -> None:
        if not self.opts.dsn:
            return
        try:
            run_schedule(self.opts.dsn)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            raise VisitFailed("schedule", 0, "schedule_failed", str(exc)) from None
        self.schedule_runs += 1
        self.signed_since_schedule = 0
        self.scheduled_once = True

    # --- the visit ------------------------------------------------------------------------------

    def start(self, r: VisitResult) -> bool:
        """Check in and fill the checklist (or, for a skipped visit, only look). True: sign later."""
        v = r.visit
        tech = self.session(technician_username(v.maintenance_company_id), "login")
        r.technician_username = tech.username
        unit = self.unit(tech, v.unit_id)
        wo, resumed = self.find_order(tech, v, unit, resume=v.case != "skipped")
        if wo is None:
            if unit["kind"] not in self.checklist_kinds(tech):
                r.outcome = "no_checklist"
                return False
            if v.case == "skipped":
                r.outcome = "left_open"
                return False
            why = ("even after `liftwatch maintenance schedule`" if self.opts.dsn else
                   "(set LIFTWATCH_DATABASE_URL so that `liftwatch maintenance schedule` can make the next one)")
            raise VisitFailed("find order", 0, "no_open_order", f"no open {v.kind} work order for {v.unit_id} {why}")
        r.work_order_id, r.work_order_kind, r.work_order_due_on = wo["work_order_id"], wo["kind"], str(wo["due_on"])
        r.status = wo["status"]
        if v.case == "skipped":
            r.outcome = "left_open"
            return False
        wo_path = f"/api/v1/work-orders/{wo['work_order_id']}"
        if resumed:
            r.resumed = True
            r.checked_in_at = _iso(wo.get("checked_in_at"))
        else:
            lat, lon = self._position(unit, v)
            body = {"lat": lat, "lon": lon} if lat is not None else {}
            done = self._call("check-in", tech.post, f"{wo_path}/check-in", body)
            r.checked_in_at = _iso(done.get("checked_in_at"))
            r.check_in_location = body or None
            r.status = done["status"]
        detail = self._call("checklist", tech.get, wo_path)
        for item in detail["items"]:
            if item["result"] is not None:  # resumed: filled before the interruption
                r.items[item["result"]] += 1
                continue
            e = entry_for(item, seed=self.opts.seed, unit_id=v.unit_id, visit_id=v.visit_id)
            self._call(f"item {item['code']}", tech.put, f"{wo_path}/items/{item['code']}", e.body())
            r.items[e.result] += 1
            if e.result == "defect":
                r.defects.append(item["code"])
        return True

    def finish(self, r: VisitResult) -> None:
        """Technician signs; the user unit countersigns unless the case says it never does."""
        v = r.visit
        tech = self.session(technician_username(v.maintenance_company_id), "login")
        signed = self._sign(tech, r, "sign")
        r.signed_at, r.status = signed["signed_at"], signed["status"]
        self.signed_since_schedule += 1
        if v.case != "missing_countersign":
            uu_id = self.units[v.unit_id].get("user_unit_id")
            if not uu_id:
                raise VisitFailed("countersign", 0, "no_user_unit", f"unit {v.unit_id} has no user unit")
            mgr = self.session(manager_username(uu_id), "countersign login")
            r.countersigner_username = mgr.username
            done = self._sign(mgr, r, "countersign")
            r.countersigned_at, r.status = done["signed_at"], done["status"]
        r.outcome = "done"

    def _sign(self, s: Session, r: VisitResult, step: str) -> dict[str, Any]:
        a = self.accounts.get(s.username)
        assert a is not None
        try:
            key = a.key()
        except (KeyError, ValueError) as exc:
            raise VisitFailed(step, 0, "no_key", str(exc)) from None
        wo_path = f"/api/v1/work-orders/{r.work_order_id}"
        payload = self._call(f"{step} payload", s.get, f"{wo_path}/signing-payload")["payload"]
        payload["signed_at"] = esign.timestamp()
        body = {"payload": payload, "signature": esign.b64url(esign.sign(key, payload)), "key_id": a.key_id,
                "password": a.password}
        done = self._call(step, s.post, f"{wo_path}/signatures", body)
        r.ledger_seqs.append(done["ledger_seq"])
        return {"signed_at": payload["signed_at"], "status": done["status"]}

    def _position(self, unit: dict[str, Any], v: Visit) -> tuple[float | None, float | None]:
        lat, lon = unit.get("lat"), unit.get("lon")
        if lat is None or lon is None:
            return None, None
        r = seeds.rng(self.opts.seed, "gps", v.visit_id)
        return (round(lat + r.uniform(-GPS_JITTER_DEG, GPS_JITTER_DEG), 6),
                round(lon + r.uniform(-GPS_JITTER_DEG, GPS_JITTER_DEG), 6))

    def close(self) -> None:
        self.client.close()


def _iso(value: Any) -> str | None:
    """The server's time as it stored it (microseconds kept), in UTC with Z."""
    if value is None:
        return None
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _local_day(t: float) -> int:
    return math.floor((t + LOCAL_OFFSET_S) / 86400)


def drive(visits: list[Visit], opts: DriveOptions, accounts: AccountsFile) -> DriveSummary:
    """Drive every visit whose planned start is before the window's end, each when its time has come."""
    w = opts.window
    results = [VisitResult(v) for v in sorted(visits, key=lambda x: (x.start, x.unit_id)) if v.start < w.end]
    # (sim time, tie-break, step, result index): starts in planned order; each finish at the
    # planned end, at the latest the window's end (the run ends there)
    events: list[tuple[float, int, str, int]] = [(r.visit.start, i, "start", i) for i, r in enumerate(results)]
    heapq.heapify(events)
    driver = Driver(opts, accounts)
    progress = Progress("technicians", enabled=opts.progress)
    launch = time.time()
    t_run = time.monotonic()
    resolved = done = failed = conn_errors = 0
    interrupted = False
    aborted: str | None = None
    last_day: int | None = None
    seq = len(events)

    def wall_due(t: float) -> float:
        return launch if opts.speedup == 0 else launch + (t - w.live_start) / opts.speedup

    def show(t: float, extra: str = "", force: bool = False) -> None:
        progress.update(resolved / max(len(results), 1), done, "visits", sim_clock(t),
                        f"{failed} failed" + (f", {extra}" if extra else ""), force=force)

    try:
        while events:
            t, _, step, i = heapq.heappop(events)
            r = results[i]
            while (wait := wall_due(t) - time.time()) > 0:
                show(t, f"next: {r.visit.unit_id} {step} in {wait:,.0f} s")
                time.sleep(min(wait, 1.0))
            day = _local_day(t)
            if step == "start" and last_day is not None and day != last_day and driver.signed_since_schedule:
                # as `analytics loop` would: on a new day, the next orders of the plans signed since
                try:
                    driver.schedule()
                except VisitFailed:
                    pass  # a visit that then lacks an order reports it
            last_day = day
            try:
                if step == "start":
                    if driver.start(r):
                        heapq.heappush(events, (max(t, min(r.visit.end, w.end)), seq, "finish", i))
                        seq += 1
                else:
                    driver.finish(r)
                conn_errors = 0
            except VisitFailed as exc:
                r.outcome, r.error = "failed", exc
                failed += 1
                no_answer = exc.status == 0 and exc.code in ("connection_error", "timeout")
                conn_errors = conn_errors + 1 if no_answer else 0
                if conn_errors >= ABORT_AFTER_CONNECTION_ERRORS:
                    aborted = (f"{conn_errors} visits in a row got no answer from {opts.api_url} "
                               f"({exc.code}: {exc.detail}); is `liftwatch api` running?")
            if r.outcome != "pending":
                resolved += 1
                done += r.outcome != "failed"
            show(t)
            if aborted:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.done()
        driver.close()
    for r in results:
        if r.outcome == "pending":  # never started, or checked in and never signed (the order stays in progress)
            r.outcome = "not_reached"
    summary = DriveSummary(window=w, speedup=opts.speedup, results=results, stats=driver.stats,
                           seconds=time.monotonic() - t_run, schedule_runs=driver.schedule_runs,
                           logins=sum(s.logins for s in driver.sessions.values()), interrupted=interrupted,
                           aborted=aborted)
    if opts.truth_path:
        write_truth(opts.truth_path, summary, opts)
    return summary


def write_truth(path: Path, summary: DriveSummary, opts: DriveOptions) -> None:
    w = summary.window
    doc = {
        "version": TRUTH_VERSION,
        "generator": "liftwatch simulate technicians",
        "parameters": {**opts.parameters, "api_url": opts.api_url, "window_start": iso(w.live_start),
                       "window_end": iso(w.end), "speedup": opts.speedup,
                       "driven_at": esign.timestamp(datetime.now(UTC))},
        "note": "times of check-in and signatures are the server's (or as signed), i.e. when this run acted; "
                "start/end are the plan's. Join with work_orders on work_order_id.",
        "counts": summary.counts(),
        "visits": [r.to_json() for r in summary.results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
