"""The ingestors under test: `python -m liftwatch ingest` subprocesses, one per replica and
incarnation, in one of four topologies:

single   one replica, plain persistent subscription (client id chaos-1)
standby  two replicas with one client id and --lease: the lease holder consumes
dual     two replicas, each with its own client id and plain subscription: both write everything
shared   N replicas in one shared-subscription group (--group chaos), each its own client id
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psutil

from bench.common import PYTHON, REPO, Processes, env_for_ingest
from liftwatch.throwaway import free_port

GROUP = "chaos"
TOPOLOGIES = ("single", "standby", "dual", "shared")
GAP_SETTLE_S = 30  # production's default: a hole must stay open this long to become a gap
_COUNTERS = (("messages", "liftwatch_ingest_messages_received_total"),
             ("acked", "liftwatch_ingest_messages_acked_total"),
             ("duplicates", "liftwatch_ingest_duplicate_rows_total"),
             ("rejected", "liftwatch_ingest_rejected_total"),
             ("entrapment_alerts", "liftwatch_ingest_entrapment_alerts_total"),
             ("db_errors", "liftwatch_ingest_db_errors_total"),
             ("lease_held", "liftwatch_ingest_lease_held"))

class IngestorProc:
    """One replica; each incarnation logs to its own file."""

    def __init__(self, procs: Processes, root: Path, dsn: str, mqtt_url: str, slot: int, args: list[str]) -> None:
        self.slot = slot
        self.args = args
        self.procs = procs
        self.root = root
        self.env = {**env_for_ingest(dsn, mqtt_url), "LIFTWATCH_GAP_SETTLE_S": str(GAP_SETTLE_S)}
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []
        self.metrics_port = 0
        self.counters: list[dict] = []  # per incarnation, scraped just before it ended

    @property
    def logpath(self) -> Path:
        return self.logs[-1]

    def start(self) -> None:
        path = self.root / f"ingest-r{self.slot + 1}-{len(self.logs) + 1}.log"
        self.logs.append(path)
        self.metrics_port = free_port()
        with path.open("wb") as fh:
            self.proc = self.procs.start([PYTHON, "-m", "liftwatch", "ingest", *self.args],
                                         cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                         env={**self.env, "LIFTWATCH_METRICS_PORT": str(self.metrics_port)})

    def count(self, text: str) -> int:
        return self.logpath.read_text(errors="replace").count(text) if self.logs else 0

    def wait_log(self, text: str, n: int = 1, timeout: float = 30.0) -> float | None:
        """Seconds until the current incarnation has logged `text` n times; None on timeout/exit."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.count(text) >= n:
                return round(time.monotonic() - t0, 2)
            if self.proc is None or self.proc.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def kill9(self) -> int:
        self.scrape("kill -9")
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        return pid

    def stop(self) -> int | None:
        if self.alive():
            self.scrape("SIGTERM")
        return self.procs.stop(self.proc, timeout=60) if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_lines(self, *needles: str) -> Counter:
        out: Counter = Counter()
        for p in self.logs:
            text = p.read_text(errors="replace")
            for n in needles:
                out[n] += text.count(n)
        return out

    def metrics(self) -> dict:
        """The incarnation's Prometheus counters (empty if it does not answer)."""
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read().decode()
        except OSError:
            return {}
        return {key: int(sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                             if ln.startswith(name + " ") or ln.startswith(name + "{")))
                for key, name in _COUNTERS}

    def cpu_s(self) -> float | None:
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
        except (psutil.Error, AttributeError):
            return None
        return round(t.user + t.system, 2)

    def scrape(self, ended_by: str) -> None:
        """Read the incarnation's counters and CPU time just before it is killed or stopped, so the
        run knows how many redeliveries the unique key absorbed (a kill loses only the last ms)."""
        row: dict = {"log": self.logpath.name, "ended_by": ended_by, "cpu_s": self.cpu_s()}
        got = self.metrics()
        row.update(got or {"error": "metrics did not answer"})
        self.counters.append(row)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.logpath.read_text(errors="replace").splitlines()[-n:]) if self.logs else ""


class Replicas:
    """The replicas of one topology, and the questions the faults ask of them."""

    def __init__(self, procs: Processes, root: Path, dsn: str, mqtt_url: str, topology: str, n: int) -> None:
        if topology not in TOPOLOGIES:
            raise ValueError(f"unknown topology {topology!r}")
        self.topology = topology
        self.members: list[IngestorProc] = []
        for slot in range(n):
            if topology == "standby":
                args = ["--client-id", "chaos-1", "--lease"]
            elif topology == "shared":
                args = ["--client-id", f"chaos-{slot + 1}", "--group", GROUP, "--allow-volatile-group"]
            else:
                args = ["--client-id", f"chaos-{slot + 1}"]
            self.members.append(IngestorProc(procs, root, dsn, mqtt_url, slot, args))
        self._kills = 0

    @property
    def consumers(self) -> int:
        """How many replicas read the broker when all is well."""
        return 1 if self.topology in ("single", "standby") else len(self.members)

    def start(self) -> None:
        for m in self.members:
            m.start()

    def count(self, text: str) -> int:
        """Occurrences of `text` in the current logs of every replica."""
        return sum(m.count(text) for m in self.members)

    def wait_count(self, text: str, n: int, timeout: float) -> float | None:
        """Seconds until the current logs together hold `text` n times; None on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.count(text) >= n:
                return round(time.monotonic() - t0, 2)
            time.sleep(0.05)
        return None

    def victim(self) -> IngestorProc:
        """Whom a kill -9 hits: the lease holder of a standby pair (the interesting case), else the
        replicas in turn."""
        self._kills += 1
        if self.topology == "standby":
            for m in self.members:
                if m.alive() and m.metrics().get("lease_held"):
                    return m
        return self.members[(self._kills - 1) % len(self.members)]

    def alive(self) -> int:
        return sum(m.alive() for m in self.members)

    def stop(self) -> list[int | None]:
        return [m.stop() for m in self.members]

    def counters(self) -> list[dict]:
        return [row | {"replica": m.slot + 1} for m in self.members for row in m.counters]

    def log_lines(self, *needles: str) -> Counter:
        out: Counter = Counter()
        for m in self.members:
            out.update(m.log_lines(*needles))
        return out

    def logs(self) -> list[Path]:
        return [p for m in self.members for p in m.logs]

    def tail(self) -> str:
        return "\n".join(f"--- replica {m.slot + 1}\n{m.tail()}" for m in self.members)
