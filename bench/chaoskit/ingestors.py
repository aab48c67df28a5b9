"""The ingestor under test: a `python -m liftwatch ingest` subprocess per incarnation."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

from bench.common import PYTHON, REPO, Processes, env_for_ingest
from liftwatch.throwaway import free_port

CLIENT_ID = "chaos-1"
GROUP = "chaos"

class IngestorProc:
    """The ingestor subprocess; each incarnation logs to its own file."""

    def __init__(self, procs: Processes, root: Path, dsn: str, mqtt_url: str, shared: bool = False) -> None:
        self.shared = shared
        self.procs = procs
        self.root = root
        self.env = {**env_for_ingest(dsn, mqtt_url), "LIFTWATCH_GAP_SETTLE_S": "3600"}
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []
        self.metrics_port = 0
        self.counters: list[dict] = []  # per incarnation, scraped just before it ended

    @property
    def logpath(self) -> Path:
        return self.logs[-1]

    def start(self) -> None:
        path = self.root / f"ingest-{len(self.logs) + 1}.log"
        self.logs.append(path)
        self.metrics_port = free_port()
        with path.open("wb") as fh:
            group = ["--group", GROUP] if self.shared else []
            self.proc = self.procs.start([PYTHON, "-m", "liftwatch", "ingest", "--client-id", CLIENT_ID, *group],
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

    def scrape(self, ended_by: str) -> None:
        """Read the incarnation's Prometheus counters just before it is killed or stopped, so the
        run knows how many redeliveries the unique key absorbed (a kill loses only the last ms)."""
        row: dict = {"log": self.logpath.name, "ended_by": ended_by}
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read().decode()
        except OSError as exc:
            row["error"] = str(exc)[:100]
            self.counters.append(row)
            return
        for key, name in (("messages", "liftwatch_ingest_messages_received_total"),
                          ("acked", "liftwatch_ingest_messages_acked_total"),
                          ("duplicates", "liftwatch_ingest_duplicate_rows_total"),
                          ("rejected", "liftwatch_ingest_rejected_total"),
                          ("db_errors", "liftwatch_ingest_db_errors_total")):
            row[key] = int(sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                               if ln.startswith(name + " ") or ln.startswith(name + "{")))
        self.counters.append(row)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.logpath.read_text(errors="replace").splitlines()[-n:]) if self.logs else ""
