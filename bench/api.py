"""API benchmark: `liftwatch api` (one uvicorn process) under 50 concurrent clients.

Same server, same database, one run; each endpoint is reported beside GET /healthz (no auth,
one `SELECT 1`), the floor this stack can reach on this machine:

  healthz        GET /healthz                         baseline
  units          GET /api/v1/units?limit=100          admin: the whole 50 k-unit registry (count + page)
  units_scoped   GET /api/v1/units?limit=100          a technician: one company's ~1 k units
  alerts         GET /api/v1/alerts                   admin, open alerts (count + page)
  countersign    POST /work-orders/{id}/signatures    the close path: password (argon2id) check,
                                                      Ed25519 verify, ledger append under its lock,
                                                      order -> closed

Setup: a throwaway PostgreSQL+TimescaleDB cluster (liftwatch.throwaway), migrated; 50 k units
on 5 k sites, 50 maintenance companies and 1 k user units loaded with COPY; 5 k open alerts;
N work orders created, filled and signed by the technician through maintenance.workorders
(the same code the API runs), so that the timed phase only countersigns. Each countersign is
signed client-side just before it is sent (signed_at must be within the server's skew).

Method: warm-up requests first (not timed); then each phase sends its requests from 50
concurrent asyncio workers over one httpx.AsyncClient (50 keep-alive connections) and records
each request's latency. The client runs on the same machine and its CPU is reported too:
on a small machine the client competes with the server for the same cores, and httpx spends
a few ms of CPU per request, so /healthz req/s is partly the client's limit. The server's CPU
per request (API process + PostgreSQL) does not depend on the client and is the fairer
comparison between endpoints. An httpx ReadError or RemoteProtocolError is a connection closed
under the client; we saw a few (≤ 13 in 5 000) only while other jobs overloaded the machine (probably uvicorn's 5 s keep-alive
timeout racing a descheduled client), and they are reported, not retried.

Pool size: the server runs with LIFTWATCH_API_POOL_SIZE = 60 (more connections than clients)
unless --pool-size says otherwise. With the default of 10 and 50 clients the server stalls:
deps.get_conn is a sync generator dependency, so a request takes its pooled connection in a
worker thread and then needs another thread (of anyio's 40) for current_user and the route;
when every thread is blocked in pool.getconn() waiting for a connection held by a request that
waits for a thread, nothing moves until psycopg_pool's 30 s timeout (fastapi/fastapi#3205).
`--starvation-probe` reproduces that against a pool of 10 and reports what it saw.

Run: .venv/bin/python bench/api.py [--quick] [--pool-size N] [--starvation-probe].
Writes bench/results/api-<timestamp>.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from datetime import UTC, date, datetime, timedelta  # noqa: E402

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from bench.common import cpu_seconds  # noqa: E402
from liftwatch import esign  # noqa: E402
from liftwatch.db import migrate  # noqa: E402
from liftwatch.throwaway import PgCluster, free_port  # noqa: E402
from maintenance import checklist as checklists  # noqa: E402
from maintenance import workorders as wo  # noqa: E402
from maintenance.auth import add_user  # noqa: E402
from maintenance.deps import User  # noqa: E402

RESULTS_DIR = _REPO / "bench" / "results"
PASSWORD = "bench password 1"
CONCURRENCY = 50
POOL_SIZE = 60  # > CONCURRENCY: see the module docstring (thread/pool starvation at the default 10)
N_MAINT, N_USER_UNITS, UNITS_PER_SITE = 50, 1000, 10
DISTRICTS = ("黄浦区", "徐汇区", "长宁区", "静安区", "普陀区", "虹口区", "杨浦区", "闵行区", "宝山区", "嘉定区",
             "浦东新区", "金山区", "松江区", "青浦区", "奉贤区", "崇明区")


def log(msg: str) -> None:
    """Progress on stderr; stdout carries the result table."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Size:
    units: int
    alerts: int
    orders: int  # countersigned in the timed phase
    get_requests: int  # per GET phase
    warmup: int


FULL = Size(units=50_000, alerts=5_000, orders=400, get_requests=5_000, warmup=300)
QUICK = Size(units=50_000, alerts=5_000, orders=60, get_requests=1_000, warmup=100)


# --- seeding ------------------------------------------------------------------------------------

def unit_id(i: int) -> str:
    return f"31{i:018d}"  # the 20-digit equipment code shape


def seed_registry(dsn: str, size: Size, rng: random.Random) -> None:
    today = date.today()
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        with conn.cursor().copy("COPY companies (company_id, name, kind) FROM STDIN") as cp:
            for i in range(N_MAINT):
                cp.write_row((f"MC{i:03d}", f"维保公司 {i}", "maintenance"))
            for i in range(N_USER_UNITS):
                cp.write_row((f"UU{i:04d}", f"物业公司 {i}", "user_unit"))
        n_sites = (size.units + UNITS_PER_SITE - 1) // UNITS_PER_SITE
        with conn.cursor().copy("COPY sites (site_id, name, district, city, lat, lon) FROM STDIN") as cp:
            for s in range(n_sites):
                cp.write_row((f"S{s:05d}", f"Building {s}", DISTRICTS[s % len(DISTRICTS)], "上海",
                              31.0 + rng.random() * 0.5, 121.2 + rng.random() * 0.5))
        cols = ("unit_id", "registration_code", "site_id", "kind", "maintenance_company_id", "user_unit_id",
                "floors", "installed_on", "last_inspection_on", "next_inspection_due")
        with conn.cursor().copy(f"COPY units ({', '.join(cols)}) FROM STDIN") as cp:
            for i in range(size.units):
                site = i // UNITS_PER_SITE
                r = rng.random()
                kind = "traction" if r < 0.9 or i % 10_000 == 0 else "escalator" if r < 0.98 else "hydraulic"
                last = today - timedelta(days=rng.randrange(0, 360))
                cp.write_row((unit_id(i), f"梯11沪{i:06d}", f"S{site:05d}", kind, f"MC{i % N_MAINT:03d}",
                              f"UU{site % N_USER_UNITS:04d}", rng.randrange(2, 40) if kind != "escalator" else None,
                              today - timedelta(days=rng.randrange(365, 7000)), last, last + timedelta(days=365)))
        kinds = ("maintenance_overdue", "frequent_faults", "offline", "inspection_due_soon")
        with conn.cursor().copy("COPY alerts (unit_id, kind, severity, reason, source, opened_at) FROM STDIN") as cp:
            for j, i in enumerate(rng.sample(range(size.units), size.alerts)):
                cp.write_row((unit_id(i), kinds[j % len(kinds)], ("info", "warning", "critical")[j % 3],
                              "seeded for the benchmark", "analytics",
                              datetime.now(UTC) - timedelta(minutes=rng.randrange(0, 60 * 24 * 30))))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")


@dataclass
class Actor:
    username: str
    user: User
    key_id: int
    key: Ed25519PrivateKey


def seed_people(dsn: str) -> dict[str, Actor]:
    actors = {}
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        for username, name, role, company in (("admin", "Ada Admin", "admin", None),
                                              ("tech", "张伟", "technician", "MC000"),
                                              ("uu", "刘安全", "user_unit", "UU0000")):
            user_id, person_id = add_user(conn, username=username, name=name, role=role, company_id=company,
                                          password=PASSWORD, certificate_no="TQ-1" if role == "technician" else None)
            key = Ed25519PrivateKey.generate()
            key_id = conn.execute("INSERT INTO signing_keys (person_id, public_key) VALUES (%s, %s) RETURNING key_id",
                                  (person_id, esign.raw_public_key(key.public_key()))).fetchone()["key_id"]
            actors[username] = Actor(username, User(user_id, person_id, username, name, role, company), key_id, key)
    return actors


def prepare_signed_orders(dsn: str, n: int, tech: Actor) -> list[int]:
    """n half-monthly orders on units of MC000 / UU0000, checked in, filled and signed by the technician."""
    cl = checklists.checklist_for("traction")
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        units = [r["unit_id"] for r in conn.execute(
            """SELECT unit_id FROM units WHERE maintenance_company_id = 'MC000' AND user_unit_id = 'UU0000'
                AND kind = 'traction' ORDER BY unit_id""").fetchall()]
        with conn.transaction():
            ids = [wo.create_order(conn, unit_id=units[k % len(units)], kind="half_monthly",
                                   due_on=date.today() + timedelta(days=15)) for k in range(n)]
            conn.execute("""UPDATE work_orders SET status = 'in_progress', technician_id = %s, checked_in_at = now(),
                                   updated_at = now() WHERE work_order_id = ANY(%s)""", (tech.user.person_id, ids))
            with conn.cursor() as cur:
                rows = []
                for it in cl.items_for("half_monthly"):
                    m = it.measurement
                    value = None if m is None else (m.min + 1.5 if m.min is not None else
                                                    (m.max - 1 if m.max is not None else 2.0))
                    rows.append((value, tech.user.person_id, it.code, ids))
                cur.executemany("""UPDATE work_order_items SET result = 'ok', measured_value = %s, updated_at = now(),
                                          updated_by = %s WHERE code = %s AND work_order_id = ANY(%s)""", rows)

    def sign_one(wo_id: int) -> None:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as c:
            payload = wo.signing_payload(c, tech.user, wo_id)["payload"]
            payload["signed_at"] = esign.timestamp()
            wo.sign(c, tech.user, wo_id, payload=payload, signature_b64=esign.b64url(esign.sign(tech.key, payload)),
                    key_id=tech.key_id, password=PASSWORD, skew=timedelta(minutes=5))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(sign_one, ids))
    return ids


# --- the server -----------------------------------------------------------------------------------

def start_api(dsn: str, port: int, pool_size: int, log_path: Path) -> subprocess.Popen:
    """`liftwatch api` in a subprocess; its log goes to a file (an unread pipe would block it)."""
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": dsn, "LIFTWATCH_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
           "LIFTWATCH_ACCESS_TOKEN_MINUTES": "120", "LIFTWATCH_API_POOL_SIZE": str(pool_size)}
    with log_path.open("ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "liftwatch", "api", "--port", str(port)], env=env, cwd=_REPO,
                                stdout=subprocess.DEVNULL, stderr=fh)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"liftwatch api exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("liftwatch api did not answer /healthz within 60 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- load -----------------------------------------------------------------------------------------

@dataclass
class Phase:
    name: str
    what: str
    requests: int
    ok: int
    errors: dict[str, int]
    elapsed_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_api_s: float
    cpu_postgres_s: float
    cpu_client_s: float
    server_cpu_ms_per_request: float = 0.0  # API + PostgreSQL CPU: what the request costs, whatever the client does
    rps_vs_healthz: float | None = None
    p50_vs_healthz: float | None = None


async def load(client: httpx.AsyncClient, make: Callable[[httpx.AsyncClient, int], object], total: int,
               expect: int) -> tuple[list[float], dict[str, int], float]:
    """`total` requests from CONCURRENCY workers; returns latencies (s), error counts, elapsed (s)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            try:
                r = await make(client, i)
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            latencies.append(time.perf_counter() - t0)
            if code != str(expect):
                errors[code] = errors.get(code, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return latencies, errors, time.perf_counter() - t0


def pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(round(q * (len(sorted_vals) - 1))))] * 1000


async def measure(name: str, what: str, client: httpx.AsyncClient, make, total: int, expect: int, *,
                  api_pid: int, pg_pid: int) -> Phase:
    cpu0 = (cpu_seconds(api_pid), cpu_seconds(pg_pid, children=True), resource.getrusage(resource.RUSAGE_SELF))
    lat, errors, elapsed = await load(client, make, total, expect)
    me = resource.getrusage(resource.RUSAGE_SELF)
    lat.sort()
    phase = Phase(name=name, what=what, requests=total, ok=total - sum(errors.values()), errors=errors,
                  elapsed_s=round(elapsed, 3), rps=round(total / elapsed, 1), p50_ms=round(pct(lat, 0.50), 2),
                  p90_ms=round(pct(lat, 0.90), 2), p99_ms=round(pct(lat, 0.99), 2), max_ms=round(lat[-1] * 1000, 2),
                  cpu_api_s=round(cpu_seconds(api_pid) - cpu0[0], 2),
                  cpu_postgres_s=round(cpu_seconds(pg_pid, children=True) - cpu0[1], 2),
                  cpu_client_s=round(me.ru_utime + me.ru_stime - cpu0[2].ru_utime - cpu0[2].ru_stime, 2))
    phase.server_cpu_ms_per_request = round((phase.cpu_api_s + phase.cpu_postgres_s) / total * 1000, 2)
    log(f"{name}: {phase.rps} req/s, p50 {phase.p50_ms} ms, p99 {phase.p99_ms} ms, errors {errors or 'none'}")
    return phase


async def run_phases(base: str, dsn: str, size: Size, actors: dict[str, Actor], orders: list[int], *,
                     api_pid: int, pg_pid: int) -> list[Phase]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        tokens = {}
        for who in ("admin", "tech", "uu"):
            r = await client.post("/api/v1/auth/token", data={"username": who, "password": PASSWORD})
            r.raise_for_status()
            tokens[who] = {"Authorization": f"Bearer {r.json()['access_token']}"}

        def get(url: str, who: str | None = None, params: dict | None = None):
            headers = tokens[who] if who else None
            return lambda c, i: c.get(url, headers=headers, params=params)

        gets = [
            ("healthz", "GET /healthz (no auth, SELECT 1)", get("/healthz")),
            ("units", "GET /api/v1/units?limit=100 as admin (50 k in scope)", get("/api/v1/units", "admin", {"limit": 100})),
            ("units_scoped", "GET /api/v1/units?limit=100 as a technician (1 k in scope)",
             get("/api/v1/units", "tech", {"limit": 100})),
            ("alerts", "GET /api/v1/alerts as admin (open, 100 per page)", get("/api/v1/alerts", "admin")),
        ]
        for name, _, make in gets:  # warm-up: connections, pool, plan caches
            await load(client, make, size.warmup, 200)
            log(f"warmed up {name}")
        results = []
        for name, what, make in gets:
            results.append(await measure(name, what, client, make, size.get_requests, 200,
                                         api_pid=api_pid, pg_pid=pg_pid))

        uu = actors["uu"]
        sha = {}
        with psycopg.connect(dsn) as conn:
            for wo_id, digest in conn.execute("SELECT work_order_id, record_sha256 FROM work_orders "
                                              "WHERE work_order_id = ANY(%s)", (orders,)):
                sha[wo_id] = digest

        def countersign(c: httpx.AsyncClient, i: int):
            wo_id = orders[i]
            payload = esign.signing_payload(record_sha=sha[wo_id], signer_id=uu.user.person_id, name=uu.user.name,
                                            role="user_unit", meaning="confirmed", signed_at=esign.timestamp())
            body = {"payload": payload, "signature": esign.b64url(esign.sign(uu.key, payload)), "key_id": uu.key_id,
                    "password": PASSWORD}
            return c.post(f"/api/v1/work-orders/{wo_id}/signatures", headers=tokens["uu"], json=body)

        results.append(await measure("countersign", "POST /api/v1/work-orders/{id}/signatures (user unit closes)",
                                     client, countersign, len(orders), 201, api_pid=api_pid, pg_pid=pg_pid))
    base_phase = results[0]
    for p in results:
        p.rps_vs_healthz = round(p.rps / base_phase.rps, 3)
        p.p50_vs_healthz = round(p.p50_ms / base_phase.p50_ms, 1)
    return results


def argon2_verify_ms(samples: int = 5) -> float:
    """One argon2id password check, the cost the signing path pays by design (21 CFR 11.200)."""
    hasher = PasswordHasher()
    h = hasher.hash(PASSWORD)
    t0 = time.perf_counter()
    for _ in range(samples):
        hasher.verify(h, PASSWORD)
    return round((time.perf_counter() - t0) / samples * 1000, 1)


def print_table(results: list[Phase]) -> None:
    out = io.StringIO()
    out.write(f"{'endpoint':<13} {'requests':>8} {'errors':>6} {'req/s':>8} {'x healthz':>9} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'p50 x':>6} {'srv cpu ms/req':>14} {'cpu api':>7} {'cpu pg':>6} {'cpu cli':>7}\n")
    for p in results:
        out.write(f"{p.name:<13} {p.requests:>8} {sum(p.errors.values()):>6} {p.rps:>8.1f} {p.rps_vs_healthz:>9.3f} "
                  f"{p.p50_ms:>8.1f} {p.p99_ms:>8.1f} {p.p50_vs_healthz:>6.1f} {p.server_cpu_ms_per_request:>14.2f} "
                  f"{p.cpu_api_s:>7.1f} "
                  f"{p.cpu_postgres_s:>6.1f} {p.cpu_client_s:>7.1f}\n")
    print(out.getvalue(), end="")


async def starvation_probe(base: str, requests: int = 100) -> dict:
    """50 clients against a server with the default pool of 10: does anything stall?"""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        r = await client.post("/api/v1/auth/token", data={"username": "admin", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        lat, errors, elapsed = await load(client, lambda c, i: c.get("/api/v1/units", headers=headers,
                                                                     params={"limit": 100}), requests, 200)
    lat.sort()
    return {"requests": requests, "errors": errors, "elapsed_s": round(elapsed, 2), "rps": round(requests / elapsed, 1),
            "p50_ms": round(pct(lat, 0.5), 1), "max_ms": round(lat[-1] * 1000, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests and orders (a few minutes)")
    ap.add_argument("--pool-size", type=int, default=POOL_SIZE, help=f"server's database pool (default {POOL_SIZE})")
    ap.add_argument("--starvation-probe", action="store_true",
                    help="also run 50 clients against a server with the default pool of 10 (takes 30-90 s)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    size = QUICK if args.quick else FULL
    rng = random.Random(args.seed)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops what we started
    pg = PgCluster()
    servers: list[subprocess.Popen] = []
    logdir = Path(tempfile.mkdtemp(prefix="liftwatch-bench-api-"))
    probe = None
    try:
        log("starting a throwaway PostgreSQL + TimescaleDB cluster")
        pg.init().start()
        dsn = pg.dsn("liftwatch_bench")
        migrate(dsn)
        t0 = time.perf_counter()
        seed_registry(dsn, size, rng)
        actors = seed_people(dsn)
        log(f"seeded {size.units} units, {size.alerts} alerts, 3 users in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        orders = prepare_signed_orders(dsn, size.orders, actors["tech"])
        log(f"{len(orders)} orders signed by the technician in {time.perf_counter() - t0:.1f} s")
        pg_pid = int((pg.datadir / "postmaster.pid").read_text().split()[0])
        port = free_port()
        servers.append(start_api(dsn, port, args.pool_size, logdir / "api.log"))
        results = asyncio.run(run_phases(f"http://127.0.0.1:{port}", dsn, size, actors, orders,
                                         api_pid=servers[-1].pid, pg_pid=pg_pid))
        stop(servers[-1])
        pool_timeouts = (logdir / "api.log").read_text(errors="replace").count("PoolTimeout")
        if args.starvation_probe:
            port = free_port()
            log("starvation probe: 50 clients, server pool of 10")
            servers.append(start_api(dsn, port, 10, logdir / "probe.log"))
            probe = asyncio.run(starvation_probe(f"http://127.0.0.1:{port}"))
            stop(servers[-1])
            probe["pool_timeouts_logged"] = (logdir / "probe.log").read_text(errors="replace").count("PoolTimeout")
            log(f"probe: {probe}")
        with psycopg.connect(dsn) as conn:
            closed = conn.execute("SELECT count(*) FROM work_orders WHERE status = 'closed'").fetchone()[0]
            ledger = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
        argon_ms = argon2_verify_ms()
    finally:
        for proc in servers:
            stop(proc)
        pg.destroy()
    shutil.rmtree(logdir, ignore_errors=True)
    load_after = os.getloadavg()
    print_table(results)
    print(f"server pool {args.pool_size}, {CONCURRENCY} clients; PoolTimeouts logged: {pool_timeouts}; "
          f"closed orders {closed}/{len(orders)}, ledger entries {ledger}; one argon2id verify here: {argon_ms} ms; "
          f"{os.cpu_count()} CPUs shared by client, API and PostgreSQL; load average before/after "
          f"{load_before[0]:.1f}/{load_after[0]:.1f}")
    if probe:
        print(f"starvation probe (pool 10): {probe}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"api-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({
        "benchmark": "api", "started": started.isoformat(), "quick": args.quick, "size": asdict(size),
        "concurrency": CONCURRENCY, "api_pool_size": args.pool_size, "pool_timeouts_logged": pool_timeouts,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "load_average_before": load_before[0], "load_average_after": load_after[0]},
        "argon2_verify_ms": argon_ms, "closed_orders": closed, "ledger_entries": ledger,
        "results": [asdict(p) for p in results], "starvation_probe": probe,
    }, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {path.relative_to(_REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
