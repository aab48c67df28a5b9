"""The hand-off between paho's network thread and the parse stage: bounded in messages and bytes.

Messages travel as columns (`Batch`: parallel lists of topics, payloads, packet ids...), a
socket read's worth at a time, so the network thread takes the inbox lock once per read and
builds no object per message; the profile of the per-message version had the lock and the
per-message dataclass at about 7 % of the ingestor's CPU.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class Batch:
    """Messages as received, in arrival order; nothing is parsed on the network thread."""

    topics: list[bytes]  # decoded by the parse stage
    payloads: list[bytes]
    mids: list[int]  # MQTT packet id; 0 = nothing to acknowledge (QoS 0, or QoS 2 which paho acks)
    dups: list[bool]  # DUP flag: the broker is delivering it again (it did not see our ack)
    generations: list[int]  # connection each came on; acks for an older connection are not sent
    received: list[float]  # time.time() of the socket read that brought it

    def __len__(self) -> int:
        return len(self.topics)

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.payloads))

    def slice(self, start: int, stop: int | None = None) -> Batch:
        return Batch(self.topics[start:stop], self.payloads[start:stop], self.mids[start:stop],
                     self.dups[start:stop], self.generations[start:stop], self.received[start:stop])

    def extend(self, other: Batch) -> None:
        self.topics += other.topics
        self.payloads += other.payloads
        self.mids += other.mids
        self.dups += other.dups
        self.generations += other.generations
        self.received += other.received

    @classmethod
    def empty(cls) -> Batch:
        return cls([], [], [], [], [], [])

    @classmethod
    def of(cls, topics: list[bytes], payloads: list[bytes], mids: list[int], dups: list[bool], generation: int,
           received: float) -> Batch:
        n = len(topics)
        return cls(topics, payloads, mids, dups, [generation] * n, [received] * n)


class Inbox:
    """A FIFO of message runs that blocks the producer while over `max_items` or `max_bytes`
    (backpressure; a run is admitted whole, so the bound is exceeded by at most one read).

    The consumer takes whole batches: it wakes when `batch_size` messages or `batch_bytes` of
    payload are waiting, or when `max_wait` seconds have passed since the oldest waiting message
    arrived.
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._runs: deque[tuple[Batch, int]] = deque()  # (run, its payload bytes)
        self._count = 0
        self._bytes = 0
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        self._want = 1  # consumer is woken when this many items are waiting
        self._want_bytes = max_bytes  # ... or this many payload bytes

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, run: Batch) -> None:
        if not run.topics:
            return
        size = run.nbytes
        with self._cond:
            while self._count and (self._count >= self._max_items or self._bytes + size > self._max_bytes):
                self._cond.wait()
            self._runs.append((run, size))
            self._count += len(run)
            self._bytes += size
            if self._count >= self._want or self._bytes >= self._want_bytes:
                self._cond.notify_all()

    def take(self, batch_size: int, max_wait: float, idle_timeout: float, *, batch_bytes: int | None = None
             ) -> Batch:
        """Up to batch_size messages and about batch_bytes of payload (a socket read's run is not
        split for bytes, so a batch may pass it by one run); an empty batch if nothing arrived
        within idle_timeout. The wait for a full batch ends max_wait after the *oldest* waiting
        message arrived, so a message that queued while the previous batch was being written
        does not wait a second window."""
        max_bytes = batch_bytes if batch_bytes is not None else self._max_bytes
        with self._cond:
            self._want = 1
            if not self._runs and not self._cond.wait_for(lambda: self._runs, idle_timeout):
                return Batch.empty()
            deadline = self._runs[0][0].received[0] + max_wait
            self._want, self._want_bytes = batch_size, max_bytes
            while self._count < batch_size and self._bytes < max_bytes:
                left = deadline - time.time()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._want, self._want_bytes = 1, self._max_bytes
            out: Batch | None = None
            taken_bytes = 0
            while self._runs and (out is None or (len(out) < batch_size and taken_bytes < max_bytes)):
                run, size = self._runs[0]
                room = batch_size - (len(out) if out is not None else 0)
                if len(run) > room:  # split the run: the rest stays at the head of the queue
                    head, rest = run.slice(0, room), run.slice(room)
                    rest_size = rest.nbytes
                    self._runs[0] = (rest, rest_size)
                    run, size = head, size - rest_size
                else:
                    self._runs.popleft()
                self._count -= len(run)
                self._bytes -= size
                taken_bytes += size
                if out is None:
                    out = run
                else:
                    out.extend(run)
            self._cond.notify_all()  # producers waiting for room
            return out if out is not None else Batch.empty()
