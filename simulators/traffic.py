"""Traffic patterns: how many trips a lift makes per hour, by building type and local time.

Profiles are per local hour (Shanghai), weekday and weekend, shaped after published
up-peak/lunch/down-peak studies of office towers and the morning/evening peaks of housing.
A unit's rate is the profile times its own busyness factor, so units of one site differ.
"""

from __future__ import annotations

from typing import Final

from simulators.clock import local_hour, local_weekday

PATTERNS: Final = ("office", "residential", "commercial")

# trips per hour for an average unit, index = local hour 0..23
_OFFICE_WEEKDAY = (1, 1, 0.5, 0.5, 0.5, 1, 3, 14, 52, 34, 24, 24, 40, 32, 24, 22, 24, 44, 34, 14, 9, 6, 3, 2)
_OFFICE_WEEKEND = (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 2, 5, 7, 8, 8, 8, 7, 7, 7, 6, 5, 4, 3, 2, 1, 1, 0.5)
_RESIDENTIAL_WEEKDAY = (3, 2, 1, 1, 1, 2, 8, 26, 30, 14, 9, 9, 11, 9, 8, 9, 13, 22, 28, 26, 20, 14, 9, 5)
_RESIDENTIAL_WEEKEND = (4, 2, 1, 1, 1, 1, 3, 8, 14, 18, 19, 18, 17, 16, 16, 16, 17, 19, 21, 21, 18, 15, 10, 6)
_COMMERCIAL = (1, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 2, 4, 10, 26, 34, 40, 38, 34, 34, 36, 40, 44, 44, 40, 30, 12, 3)

_PROFILES: Final = {
    "office": (_OFFICE_WEEKDAY, _OFFICE_WEEKEND),
    "residential": (_RESIDENTIAL_WEEKDAY, _RESIDENTIAL_WEEKEND),
    "commercial": (_COMMERCIAL, _COMMERCIAL),
}

# escalators run on a timetable (local hours, inclusive start, exclusive end)
ESCALATOR_HOURS: Final = {"commercial": (9, 23), "office": (7, 21), "residential": (6, 23)}


def trips_per_hour(pattern: str, t: float) -> float:
    weekday, weekend = _PROFILES[pattern]
    return (weekend if local_weekday(t) >= 5 else weekday)[local_hour(t)]


def peak_share(pattern: str, t: float) -> float:
    """0..1, how close this hour is to the pattern's busiest hour (drives load and lobby trips)."""
    weekday, weekend = _PROFILES[pattern]
    profile = weekend if local_weekday(t) >= 5 else weekday
    return profile[local_hour(t)] / max(profile)


def lobby_share(pattern: str, t: float) -> float:
    """Probability that a trip starts or ends at the lobby (up-peak in the morning, down-peak at night)."""
    hour = local_hour(t)
    if pattern == "office":
        return 0.8 if hour in (7, 8, 9, 17, 18) else 0.5
    if pattern == "residential":
        return 0.75 if hour in (7, 8, 17, 18, 19, 20) else 0.55
    return 0.45


def escalator_running(pattern: str, t: float) -> bool:
    lo, hi = ESCALATOR_HOURS[pattern]
    return lo <= local_hour(t) < hi
