"""Ingest benchmark: the Liftwatch ingestor against the C "limit pipe" (and a naive subscriber).

Same broker, same database server, same message files, one run; prints a table with ratios
(stdout) and writes every number to bench/results/ingest-<timestamp>.json.

Contenders (each writes into its own fresh, migrated database on the one cluster):
  naive        a paho subscriber doing one INSERT + commit per message (bench/naive_subscriber.py)
  limit        mosquitto_sub -q 1 | psql \\copy into a jsonb staging table, then one typed
               INSERT ... SELECT ... ON CONFLICT DO NOTHING (through jsonb_array_elements for
               batched messages): C clients doing the same storage work without validation,
               bookkeeping or ack-after-commit
  liftwatch    `python -m liftwatch ingest`, one process, production settings (plain
               subscription, default per-unit rate limit)

Messages: 20 units, each sample carrying every contract field, samples 100 ms apart on the
device clock (inside the default rate limit), 1 or 10 samples per message, QoS 1.

Modes (bench/ingestkit/runner.py): `backlog` drains messages queued before the consumer
starts; `live` starts the consumer first and then 20 `mosquitto_pub` publishers, which send
while it works on the same cores. Each contender is measured in rows/s and in CPU
milliseconds per 1,000 stored rows (its processes plus its PostgreSQL backends,
bench/ingestkit/cpu.py), the figure that hardly moves with other load on the machine. The
throughput contenders run in 3 rounds (--repeat), each pipe/Liftwatch pair in alternating
order, and the table shows medians.

Also measured: publish->commit latency with a live ingestor at a paced offered rate (5 k msg/s
of 1 sample, and 500 msg/s of 10 samples; bench/ingestkit/latency.py), and the ingestor's peak
RSS while a 500 k-message backlog drains.

Needs: mosquitto, mosquitto_pub, mosquitto_sub, psql, PostgreSQL 15 with TimescaleDB. Runs as
root or not (the throwaway cluster drops to the postgres user). Takes about 10 minutes.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
# run as `python bench/ingest.py`, sys.path[0] is bench/, where this file would shadow the
# `ingest` package; put the repository root there instead
if sys.path and Path(sys.path[0] or ".").resolve() == _REPO / "bench":
    sys.path[0] = str(_REPO)
elif str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from bench.common import REPO, CpuMeter, Servers, log, need, now_utc, write_dataset  # noqa: E402
from bench.ingestkit.cpu import loadavg  # noqa: E402
from bench.ingestkit.latency import run_latency  # noqa: E402
from bench.ingestkit.report import report  # noqa: E402
from bench.ingestkit.runner import Bench, Sizes  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
# throughput pairs (limit pipe, Liftwatch) by mode and samples per message, then the rest
PAIRS = (("limit1", "lift1"), ("limit10", "lift10"), ("livelimit1", "livelift1"), ("livelimit10", "livelift10"))
PHASES = ("naive", *(k for pair in PAIRS for k in pair), "latency1", "latency10", "backlog")


def run(bench: Bench, phases: list[str]) -> None:
    s = bench.sizes
    per_unit = -(-s.messages // s.units)
    per_unit_big = max(per_unit, -(-s.backlog // s.units))
    log(f"writing message files for {s.units} units under {bench.root}")
    end = now_utc()
    one = write_dataset(bench.root, "s1", bench.units, per_unit_big, 1, end=end)
    data = {1: one.subset(per_unit, bench.root)}
    naive1 = one.subset(-(-s.naive_messages // s.units), bench.root)
    backlog = one.subset(-(-s.backlog // s.units), bench.root)
    if any(p.endswith("10") and not p.startswith("latency") for p in phases):
        data[10] = write_dataset(bench.root, f"s{s.samples}", bench.units, per_unit, s.samples, end=end)
    log("starting the throwaway PostgreSQL+TimescaleDB cluster and Mosquitto broker")
    bench.servers = Servers.start()
    bench.meter = CpuMeter(bench.servers)

    def one_phase(phase: str) -> None:
        mode = "live" if phase.startswith("live") else "backlog"
        n = 1 if phase.endswith("1") else s.samples
        key = phase.replace("10", str(s.samples)) if n != 1 else phase
        if phase == "naive":
            bench.run_naive(naive1)
        elif "limit" in phase:
            bench.run_limit(key, data[n], mode)
        else:
            bench.run_liftwatch(key, data[n], f"Liftwatch, {n} sample{'s' if n > 1 else ''}/msg, {mode}", mode)

    for rep in range(s.repeat):
        if s.repeat > 1:
            log(f"--- throughput round {rep + 1} of {s.repeat}")
        if "naive" in phases:
            one_phase("naive")
        for pair in PAIRS:  # each pair side by side, the order alternating from round to round
            for phase in (pair if rep % 2 == 0 else pair[::-1]):
                if phase in phases:
                    one_phase(phase)
    if "latency1" in phases:
        run_latency(bench, s.latency_rate, 1, s.latency_seconds)
    if "latency10" in phases:
        run_latency(bench, s.latency_batched_rate, s.samples, s.latency_seconds)
    if "backlog" in phases:
        bench.run_liftwatch("backlog", backlog, f"Liftwatch, {backlog.messages // 1000} k backlog (RSS)", "backlog")


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/ingest.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke-run sizes (20 k messages, 4 k naive, 50 k backlog, 8 s latency, 1 round)")
    ap.add_argument("--messages", type=int, help="messages per throughput contender (default 100000)")
    ap.add_argument("--naive-messages", type=int, help="messages for the naive baseline (default 20000)")
    ap.add_argument("--backlog", type=int, help="backlog for the RSS run (default 500000)")
    ap.add_argument("--units", type=int, help="publishing units, one mosquitto_pub each (default 20)")
    ap.add_argument("--samples", type=int, help="samples per message in the batched runs (default 10)")
    ap.add_argument("--latency-rate", type=int, help="offered msg/s of 1 sample in the latency run (default 5000)")
    ap.add_argument("--latency-batched-rate", type=int,
                    help="offered msg/s of --samples samples in the batched latency run (default 500)")
    ap.add_argument("--latency-seconds", type=float, help="length of each latency run (default 20)")
    ap.add_argument("--repeat", type=int, help="rounds of the throughput contenders, median reported (default 3)")
    ap.add_argument("--only", help=f"comma-separated phases to run: {','.join(PHASES)}")
    ap.add_argument("--keep", action="store_true", help="keep the message files and logs (path printed)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/ingest-*.json")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="attach py-spy (--gil) to every timed ingestor run; folded stacks land in DIR "
                         "(profiling slows the ingestor: do not read the table of such a run)")
    args = ap.parse_args()

    need("mosquitto_pub", "mosquitto_sub", "psql")
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in ("messages", "naive_messages", "backlog", "units", "samples", "latency_rate", "latency_batched_rate",
                 "latency_seconds", "repeat"):
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    phases = [p.strip() for p in args.only.split(",")] if args.only else list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}")

    started = datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="liftwatch-bench-"))
    if os.geteuid() == 0:  # the throwaway cluster runs as postgres; nothing here needs it, but be tidy
        os.chmod(root, 0o755)
    bench = Bench(sizes, root)
    if args.profile is not None:
        need(str(Path(sys.executable).parent / "py-spy"))
        args.profile.mkdir(parents=True, exist_ok=True)
        bench.profile_dir = args.profile
    load_start = loadavg()
    if load_start[0] > 0.5:
        log(f"NOTE: load average {load_start[0]} before the start: other work shares the cores "
            "(the CPU per row figures are the ones to read)")
    try:
        run(bench, phases)
        results = report(bench, args.quick, started, load_start, loadavg())
    finally:
        bench.close()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"ingest-{started.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if args.quick else ''}.json"
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        log(f"results written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
