"""CPU seconds of one contender: its own processes plus the PostgreSQL backends serving it.

Why per process, and not the machine's busy time: the machine is shared (other people's tests,
the publishers, the broker), and a consumer's CPU per stored row hardly moves with that load,
while its rows/s does. The backends of a contender are the client backends connected to its
own database (each contender writes into a fresh one), minus the benchmark's own polling
connection. They are found by process title (`postgres: <user> <db> <host(port)> ...`) and read
from /proc every 50 ms, so a backend that exits between two reads loses at most 50 ms; the
contenders keep theirs open until they are measured (the ingestor until it is stopped, the
pipe's psql with a trailing pg_sleep).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import psutil

SAMPLE_EVERY_S = 0.05


def proc_cpu(pid: int) -> float:
    """user + system CPU seconds of one live process (0 if it is gone)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


class BackendCpu(threading.Thread):
    """Per-backend CPU of the client backends of one database, sampled until `stop()`."""

    def __init__(self, postmaster_pid: int, dbname: str, exclude: set[int]) -> None:
        super().__init__(name=f"backend-cpu-{dbname}", daemon=True)
        self.postmaster = psutil.Process(postmaster_pid)
        self.dbname = dbname
        self.exclude = exclude
        self.seen: dict[int, float] = {}  # pid -> newest CPU seconds read
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_EVERY_S):
            self.sample()

    def sample(self) -> dict[int, float]:
        try:
            children = self.postmaster.children()
        except psutil.Error:
            return dict(self.seen)
        for child in children:
            if child.pid in self.exclude:
                continue
            try:
                # a client backend is titled "postgres: <user> <database> <host(port)> <state>";
                # autovacuum and TimescaleDB workers name the database differently and are not counted
                words = " ".join(child.cmdline()).split()
                if len(words) < 4 or words[0] != "postgres:" or words[2] != self.dbname or "(" not in words[3]:
                    continue
                t = child.cpu_times()
            except psutil.Error:
                continue
            with self._lock:
                self.seen[child.pid] = t.user + t.system
        with self._lock:
            return dict(self.seen)

    def stop(self) -> dict[int, float]:
        """Final per-backend CPU seconds (since each backend started)."""
        self._halt.set()
        if self.is_alive():
            self.join(5)
        return self.sample()


@dataclass
class Usage:
    """CPU seconds over one measured window."""

    consumer_process_s: float  # the contender's own processes (Python ingestor; mosquitto_sub + psql)
    backend_s: float  # the PostgreSQL backends serving it
    backends: int  # how many backends that was

    @property
    def total_s(self) -> float:
        return self.consumer_process_s + self.backend_s

    def per_1000_rows_ms(self, rows: int) -> float:
        """CPU milliseconds per 1,000 stored rows (= CPU microseconds per row)."""
        return 1e6 * self.total_s / rows


def backend_delta(before: dict[int, float], after: dict[int, float]) -> tuple[float, int]:
    """CPU of backends between two readings; a backend born after `before` counts from zero."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items()), len(after)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]

