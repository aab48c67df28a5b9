"""Login throttling: too many failed logins for one username, or from one client address,
within a window, and further attempts are refused (429 with Retry-After) until it passes.

    5 failures per username / 15 min   guessing one account's password
    20 failures per address / 15 min   one machine trying many accounts

A successful login clears its username's failures (and does not count against the address).
Every attempt that is let through is counted as a failure *before* the password is checked
and taken back on success, so parallel attempts cannot all slip past the check.

In-process only: each API process keeps its own counters (on `app.state`), so with N
processes an attacker gets N times the attempts, and a restart forgets them. A multi-process
deployment needs a shared store (a table keyed by username/address with the failure times,
updated in the login transaction, or the reverse proxy's limiter). Memory is bounded: at most
`max_keys` usernames and addresses each, the least recently used forgotten first (so a flood
of distinct usernames can evict a counter; the per-address limit caps such a flood).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_IP = 20
WINDOW_S = 15 * 60.0
MAX_KEYS = 10_000
MAX_KEY_CHARS = 200  # a username is keyed by its first 200 characters: 10 000 keys stay small


class _Window:
    """Failure times by key, at most `limit` kept per key (older ones no longer matter)."""

    def __init__(self, limit: int, window_s: float, max_keys: int) -> None:
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._times.get(key)
        if times is None:
            return None
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._times[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0: now)."""
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return times[0] + self.window_s - now

    def add(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            times = self._times[key] = deque(maxlen=self.limit)
        times.append(now)
        self._times.move_to_end(key)
        while len(self._times) > self.max_keys:
            self._times.popitem(last=False)

    def take_back(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times:
            times.pop()

    def clear(self, key: str) -> None:
        self._times.pop(key, None)

    def __len__(self) -> int:
        return len(self._times)


class LoginThrottle:
    def __init__(self, *, per_user: int = MAX_FAILURES_PER_USER, per_ip: int = MAX_FAILURES_PER_IP,
                 window_s: float = WINDOW_S, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users = _Window(per_user, window_s, max_keys)
        self.ips = _Window(per_ip, window_s, max_keys)
        self.clock = clock
        self._lock = threading.Lock()  # sync routes run in a thread pool

    def attempt(self, username: str, ip: str) -> int:
        """0 when this attempt may go ahead (it is counted as a failure until `succeeded`),
        else the whole seconds to wait (for Retry-After)."""
        username, ip = username[:MAX_KEY_CHARS], ip[:MAX_KEY_CHARS]
        with self._lock:
            now = self.clock()
            wait = max(self.users.retry_after(username, now), self.ips.retry_after(ip, now))
            if wait > 0:
                return max(1, math.ceil(wait))
            self.users.add(username, now)
            self.ips.add(ip, now)
            return 0

    def succeeded(self, username: str, ip: str) -> None:
        username, ip = username[:MAX_KEY_CHARS], ip[:MAX_KEY_CHARS]
        with self._lock:
            self.users.clear(username)
            self.ips.take_back(ip, self.clock())
