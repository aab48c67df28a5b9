"""Communication loss: a unit's terminal goes dark (4G module hangs, power to the terminal cut,
a contractor unplugs it) while the lift keeps running.

Everything the unit produces during a loss is lost upstream of the broker: no buffering, the
seq counter keeps counting (so the ingestor sees the hole as a gap, as it would in the field).
This gives the `offline` alert and the "unverifiable" visit a ground truth. Losses come from
their own seeded stream per unit, so switching them on changes nothing else a unit does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from simulators import seeds
from simulators.truth import CommLoss
from simulators.unit import Item

MEDIAN_LOSS_S = 2 * 3600.0  # lognormal median: most outages are fixed within a shift
LOSS_SIGMA = 1.2  # wide: from minutes (a reboot) to days (waiting for a site visit)
MIN_LOSS_S = 20 * 60.0  # shorter drops are reconnects, not outages
MAX_LOSS_S = 4 * 86400.0


def plan_losses(seed: int, unit_index: int, unit_id: str, start: float, end: float,
                per_day: float) -> list[CommLoss]:
    """The unit's outages in [start, end): Poisson starts, lognormal lengths, overlaps merged."""
    if per_day <= 0:
        return []
    r = seeds.rng(seed, "comm-loss", unit_index)
    out: list[CommLoss] = []
    for t in seeds.poisson_times(r, start, end, per_day):
        length = min(MAX_LOSS_S, max(MIN_LOSS_S, r.lognormvariate(math.log(MEDIAN_LOSS_S), LOSS_SIGMA)))
        a, b = round(t, 3), round(min(t + length, end), 3)
        if out and a <= out[-1].end:
            out[-1].end = max(out[-1].end, b)
        else:
            out.append(CommLoss(unit_id, a, b))
    return out


def drop_lost(items: Iterator[Item], losses: list[CommLoss]) -> Iterator[Item]:
    """The unit's items without those produced during a loss (items come in time order)."""
    if not losses:
        yield from items
        return
    i = 0
    for item in items:
        t = item[0]
        while i < len(losses) and t >= losses[i].end:
            i += 1
        if i < len(losses) and losses[i].start <= t:
            continue
        yield item
