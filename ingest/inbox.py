"""The hand-off between paho's network thread and the writer: bounded in messages and bytes."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class Inbound:
    """One MQTT message as received; nothing is parsed on the network thread."""

    topic: bytes  # decoded by the parse stage, not on the network thread
    payload: bytes
    mid: int
    qos: int
    generation: int  # MQTT connection it came on; acks for an older connection are not sent
    received: float  # time.time() at receipt


class Inbox:
    """A FIFO that blocks the producer when over `max_items` or `max_bytes` (backpressure).

    The consumer takes whole batches: it wakes when `batch_size` messages are waiting or when
    `max_wait` seconds have passed since the first message of the batch arrived.
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._items: deque[Inbound] = deque()
        self._bytes = 0
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        self._want = 1  # consumer is woken when this many items are waiting

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, item: Inbound) -> None:
        size = len(item.payload)
        with self._cond:
            while self._items and (len(self._items) >= self._max_items or self._bytes + size > self._max_bytes):
                self._cond.wait()
            self._items.append(item)
            self._bytes += size
            if len(self._items) >= self._want:
                self._cond.notify_all()

    def take(self, batch_size: int, max_wait: float, idle_timeout: float) -> list[Inbound]:
        """Up to batch_size items; [] if nothing arrived within idle_timeout. The wait for a full
        batch ends max_wait after the *oldest* waiting message arrived, so a message that queued
        while the previous batch was being written does not wait a second window."""
        with self._cond:
            self._want = 1
            if not self._items and not self._cond.wait_for(lambda: self._items, idle_timeout):
                return []
            deadline = self._items[0].received + max_wait
            self._want = batch_size
            while len(self._items) < batch_size:
                left = deadline - time.time()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._want = 1
            n = min(batch_size, len(self._items))
            batch = [self._items.popleft() for _ in range(n)]
            self._bytes -= sum(len(i.payload) for i in batch)
            self._cond.notify_all()  # producers waiting for room
            return batch
