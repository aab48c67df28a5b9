"""CPU seconds of the database server and the broker over a run, summed over their lives: each
crash or restart starts a new process tree, so each life is measured from its start to just
before it is stopped."""

from __future__ import annotations

import psutil

from bench.common import cpu_seconds
from liftwatch.throwaway import Mosquitto, PgCluster


class ServerCpu:
    def __init__(self, pg: PgCluster, mq: Mosquitto) -> None:
        self.pg = pg
        self.mq = mq
        self.total = {"postgres": 0.0, "broker": 0.0}
        self._base: dict[str, float | None] = {}

    def _now(self, which: str) -> float | None:
        try:
            if which == "postgres":
                pid = int((self.pg.datadir / "postmaster.pid").read_text().split()[0])
            else:
                pid = self.mq.proc.pid
            psutil.Process(pid)  # raises if it is gone
            return cpu_seconds(pid, children=True)  # a postmaster's reaped backends count too
        except (OSError, ValueError, IndexError, AttributeError, psutil.Error):
            return None

    def begin(self, which: str) -> None:
        self._base[which] = self._now(which)

    def end(self, which: str) -> None:
        base, now = self._base.pop(which, None), self._now(which)
        if base is not None and now is not None:
            self.total[which] += now - base

    def seconds(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.total.items()}
