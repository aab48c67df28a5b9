"""The faults: kill -9 of the ingestor, broker restart, database crash, and the overlap of
the last two (a host reboot where the ingestor comes up before the database)."""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass, field

from bench.chaoskit.clock import elapsed, log
from bench.chaoskit.cpu import ServerCpu
from bench.chaoskit.fleet import Fleet
from bench.chaoskit.ingestors import IngestorProc, Replicas
from bench.chaoskit.plan import Plan
from liftwatch.throwaway import Mosquitto, PgCluster


@dataclass
class Fault:
    kind: str
    at_s: float  # since the stream started
    detail: str = ""
    down_s: float | None = None  # how long the component was away
    recovered_s: float | None = None  # from the fault until the component was serving again
    extra: dict = field(default_factory=dict)


class Chaos:
    def __init__(self, plan: Plan, pg: PgCluster, mq: Mosquitto, ing: Replicas, fleet: Fleet,
                 cpu: ServerCpu) -> None:
        self.plan = plan
        self.pg = pg
        self.mq = mq
        self.ing = ing
        self.fleet = fleet
        self.cpu = cpu
        self.done: list[Fault] = []

    def schedule(self) -> list[float]:
        """Fault start times (s since the stream start): spread over 10 %..80 % of the stream."""
        n = len(self.plan.faults)
        d = self.plan.duration
        if n == 1:
            return [0.4 * d]
        step = 0.7 * d / (n - 1)
        rng = random.Random(self.plan.seed)
        return [0.1 * d + i * step + rng.uniform(-0.25, 0.25) * step for i in range(n)]

    def run(self, started: float) -> None:
        for kind, at in zip(self.plan.faults, self.schedule(), strict=True):
            wait = started + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self.fleet.stream_ended:
                log(f"stream already over: fault {kind} skipped")
                continue
            fault = getattr(self, f"_{kind}")()
            self.done.append(fault)
            time.sleep(1.0)  # at least a second of undisturbed stream between faults

    def _kill(self, fault: Fault) -> tuple[IngestorProc, int]:
        """kill -9 one replica (a standby pair's holder) and start it again at once, as a container
        restart policy would. `recovered_s`: until a replica consumes again — for `dual` and
        `shared` the others never stopped (0), for `standby` the other replica's takeover."""
        victim = self.ing.victim()
        fault.extra["replica"] = victim.slot + 1
        connected = self.ing.count("connected to broker")
        victim_connects = victim.count("connected to broker")
        t = time.monotonic()
        pid = victim.kill9()
        others_consuming = self.ing.topology in ("dual", "shared") and self.ing.alive() > 0
        victim.start()
        fault.extra["ingestor_log"] = victim.logpath.name
        if others_consuming:
            fault.recovered_s = 0.0
        else:  # single: the restarted process; standby: the other replica taking the lease over
            back = self.ing.wait_count("connected to broker", connected - victim_connects + 1, timeout=45)
            fault.recovered_s = round(time.monotonic() - t, 2) if back is not None else None
        again = victim.wait_log("connected to broker", timeout=30) if self.ing.topology != "standby" else None
        fault.extra["killed_replica_reconnected_s"] = again
        log(f"  replica {victim.slot + 1} restarted ({victim.logpath.name}); consuming again after "
            f"{fault.recovered_s if fault.recovered_s is not None else '>45'} s")
        return victim, pid

    def _ingestor(self) -> Fault:
        f = Fault("ingestor", elapsed())
        log(f"FAULT ingestor: kill -9 (published {self.fleet.published:,})")
        _, pid = self._kill(f)
        f.detail = f"kill -9 pid {pid} (replica {f.extra['replica']}), restarted at once"
        return f

    def _broker(self) -> Fault:
        f = Fault("broker", elapsed())
        log(f"FAULT broker: SIGTERM (persistence saved on exit), down {self.plan.broker_down_s} s "
            f"(published {self.fleet.published:,})")
        connects = self.ing.count("connected to broker")
        t = time.monotonic()
        self.cpu.end("broker")
        self.mq.stop(signal.SIGTERM)
        f.extra["stop_s"] = round(time.monotonic() - t, 2)
        time.sleep(self.plan.broker_down_s)
        self.mq.start()
        self.cpu.begin("broker")
        f.down_s = round(time.monotonic() - t, 2)
        f.detail = f"SIGTERM, saved in {f.extra['stop_s']} s, started again after {f.down_s} s"
        back = self.ing.wait_count("connected to broker", connects + self.ing.consumers, timeout=45)
        f.extra["ingestor_reconnected_s"] = back
        deadline = time.monotonic() + 30
        while self.fleet.connected() < len(self.fleet.clients) and time.monotonic() < deadline:
            time.sleep(0.1)
        f.recovered_s = round(time.monotonic() - t, 2)
        log(f"  broker back after {f.down_s} s; ingestors reconnected {back} s later; "
            f"{self.fleet.connected()}/{len(self.fleet.clients)} publishers connected at t+{f.recovered_s} s")
        return f

    def _db_stop(self, f: Fault) -> float:
        log(f"FAULT {f.kind}: pg_ctl stop -m immediate, down {self.plan.db_down_s} s "
            f"(published {self.fleet.published:,})")
        t = time.monotonic()
        self.cpu.end("postgres")
        self.pg.stop("immediate")
        return t

    def _db_start(self, f: Fault, t: float) -> None:
        left = t + self.plan.db_down_s - time.monotonic()
        if left > 0:
            time.sleep(left)
        t_start = time.monotonic()
        backs = self.ing.count("database is back")
        self.pg.start()
        self.cpu.begin("postgres")
        f.down_s = round(time.monotonic() - t, 2)
        f.extra["start_s"] = round(time.monotonic() - t_start, 2)
        log(f"  database accepting connections again after {f.down_s} s (start + recovery {f.extra['start_s']} s)")
        # the writer has been retrying a batch with backoff: serving when one commits again
        if self.ing.wait_count("database is back", backs + 1, timeout=20) is not None:
            f.recovered_s = round(time.monotonic() - t, 2)
            log(f"  an ingestor committed its retried batch at +{f.recovered_s} s")

    def _database(self) -> Fault:
        f = Fault("database", elapsed())
        t = self._db_stop(f)
        self._db_start(f, t)
        f.detail = f"immediate stop, {f.down_s} s away (crash recovery on start)"
        return f

    def _overlap(self) -> Fault:
        f = Fault("overlap", elapsed())
        t = self._db_stop(f)
        time.sleep(min(1.0, self.plan.db_down_s / 3))
        victim = self.ing.victim()
        pid = victim.kill9()
        log(f"FAULT overlap: kill -9 replica {victim.slot + 1} (pid {pid}) while the database is down; "
            "restarting it at once")
        victim.start()
        f.extra["replica"] = victim.slot + 1
        self._db_start(f, t)
        f.detail = (f"database immediate stop, {f.down_s} s away; replica {victim.slot + 1} (pid {pid}) "
                    "killed -9 and restarted while it was down")
        return f
