"""Derived random streams. Python's hash() is salted per process, so seeds come from BLAKE2b:
the same (seed, labels) gives the same stream on every machine and every run."""

from __future__ import annotations

import hashlib
import random


def derive(seed: int, *labels: object) -> int:
    """A 64-bit seed for the stream named by `labels` under the run's `seed`."""
    text = "\x1f".join([str(seed), *(str(x) for x in labels)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def rng(seed: int, *labels: object) -> random.Random:
    """An independent random.Random for one purpose (one unit's dynamics, one site's alarms...)."""
    return random.Random(derive(seed, *labels))


def poisson_times(r: random.Random, start: float, end: float, per_day: float) -> list[float]:
    """Times of a homogeneous Poisson process with `per_day` events per day in [start, end)."""
    out: list[float] = []
    if per_day <= 0:
        return out
    rate = per_day / 86400.0
    t = start + r.expovariate(rate)
    while t < end:
        out.append(t)
        t += r.expovariate(rate)
    return out
