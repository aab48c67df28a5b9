"""What a simulated technician records for each checklist item: a result, a measured value
where the item asks for one, and a note.

Values are realistic for the quantity (docs/simulator.md lists them): A-1-29 landing door
lock engagement 7.5-12 mm (minimum 7), stopping accuracy within +/-6 mm (limit +/-10),
door panel clearances 2-5.5 mm (ceiling 10), insulation 5-200 MOhm (minimum 0.5); items
whose limit is the manufacturer's get a plausible reading and the manufacturer's figure in
the note, as the checklist asks. Rope diameters follow a nominal diameter fixed per unit.
Most items are `ok`; a few are `adjusted` or `replaced`; rarely one is a `defect`, with a
value outside the limit where the item has one (the API accepts such a value only as a
defect, and opens a hazard when the order is signed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Final

from simulators import seeds

P_DEFECT: Final = 0.002  # per item: about one visit in 16 (31 items) or in 7 (annual, 76 items) finds one
P_REPLACED: Final = 0.01
P_ADJUSTED: Final = 0.05


@dataclass(frozen=True, slots=True)
class Reading:
    lo: float  # typical range of a healthy reading
    hi: float
    bad_lo: float  # range of a reading that makes the item a defect
    bad_hi: float
    decimals: int = 1
    limit_note: str = ""  # the applicable limit, where the checklist encodes none


# By item code (TSG T5002-2017 Annexes A-D). bad_* lie outside the encoded limit where one exists
# (A-1-23, A-1-29, A-3-11, A-4-05, B-1-26, B-2-01, B-2-03, B-4-03, C-1-17, D-1-21, D-2-01), else
# beyond the figure named in the note.
READINGS: Final[dict[str, Reading]] = {
    "A-1-05": Reading(0.25, 0.60, 0.80, 1.10, 2, "manufacturer's limit: 0.2-0.7 mm"),  # brake clearance
    "A-1-23": Reading(-6.0, 6.0, 11.0, 16.0),  # stopping accuracy, mm; limit +/-10 (sign chosen at random)
    "A-1-29": Reading(7.5, 12.0, 5.5, 6.8),  # lock engagement, mm; minimum 7
    "A-2-02": Reading(4.0, 8.0, 1.5, 2.8, 1, "manufacturer's minimum lining thickness: 3.0 mm"),
    "A-2-07": Reading(0.2, 1.8, 3.2, 4.5, 1, "manufacturer's wear limit: 3.0 mm"),
    "A-2-10": Reading(0.2, 1.5, 2.2, 3.0, 1, "manufacturer's wear limit: 2.0 mm"),
    "A-3-03": Reading(0.1, 1.2, 2.2, 3.0, 1, "manufacturer's groove wear limit: 2.0 mm"),
    "A-3-11": Reading(2.0, 5.5, 10.5, 13.0),  # door panel clearance, mm; ceiling 10
    "A-3-13": Reading(200.0, 350.0, 60.0, 120.0, 0, "permitted range for this buffer and layout: 150-400 mm"),
    "A-4-03": Reading(0.1, 0.8, 1.7, 2.4, 1, "manufacturer's wear limit: 1.5 mm"),
    "A-4-05": Reading(5.0, 200.0, 0.20, 0.45, 2),  # insulation, MOhm; minimum 0.5
    # Annex B, hydraulic lifts
    "B-1-20": Reading(-7.0, 7.0, 11.0, 16.0, 1, "stopping accuracy limit: ±10 mm"),  # sign chosen at random
    "B-1-26": Reading(7.5, 12.0, 5.5, 6.8),  # lock engagement, mm; minimum 7
    "B-2-01": Reading(135.0, 165.0, 175.0, 195.0, 0),  # relief valve, % of full-load pressure; at most 170
    "B-2-03": Reading(1.8, 2.2, 2.4, 2.8, 2),  # hand pump relief valve, x full-load pressure; at most 2.3
    "B-2-07": Reading(0.2, 1.8, 3.2, 4.5, 1, "manufacturer's wear limit: 3.0 mm"),
    "B-2-08": Reading(0.2, 1.5, 2.6, 3.5, 1, "manufacturer's wear limit: 2.5 mm"),
    "B-2-10": Reading(0.2, 1.5, 2.2, 3.0, 1, "manufacturer's wear limit: 2.0 mm"),
    "B-4-03": Reading(5.0, 200.0, 0.20, 0.45, 2),  # insulation, MOhm; minimum 0.5
    "B-4-14": Reading(0.0, 6.0, 12.0, 20.0, 1, "permitted settling: 10 mm in 10 minutes"),
    # Annex C, dumbwaiters
    "C-1-17": Reading(6.0, 10.0, 3.5, 4.8),  # lock engagement, mm; minimum 5
    "C-2-02": Reading(4.0, 8.0, 1.5, 2.8, 1, "manufacturer's minimum lining thickness: 3.0 mm"),
    "C-2-05": Reading(0.2, 1.8, 3.2, 4.5, 1, "manufacturer's wear limit: 3.0 mm"),
    "C-2-07": Reading(0.2, 1.5, 2.2, 3.0, 1, "manufacturer's wear limit: 2.0 mm"),
    "C-3-09": Reading(150.0, 300.0, 40.0, 90.0, 0, "permitted range for this buffer and layout: 100-350 mm"),
    "C-4-03": Reading(0.1, 0.8, 1.7, 2.4, 1, "manufacturer's wear limit: 1.5 mm"),
    "C-4-04": Reading(20.0, 30.0, 12.0, 16.0, 1, "manufacturer's range: 18-32 mm"),
    "C-4-05": Reading(5.0, 200.0, 0.20, 0.45, 2, "insulation at least 0.5 MΩ at 500 V d.c."),
    # Annex D, escalators and moving walks
    "D-1-21": Reading(1.0, 3.5, 4.3, 6.0),  # skirt clearance one side, mm; at most 4
    "D-2-01": Reading(0.2, 1.8, 2.3, 4.0),  # handrail speed deviation, %; 0 to +2
    "D-3-01": Reading(4.0, 8.0, 1.5, 2.8, 1, "manufacturer's minimum lining thickness: 3.0 mm"),
    "D-3-03": Reading(6.0, 9.0, 2.0, 3.5, 1, "manufacturer's minimum slider thickness: 4.0 mm"),
    "D-3-05": Reading(0.30, 0.95, 1.60, 2.20, 2, "range for 0.5 m/s (GB 16899): 0.20-1.00 m"),
    "D-3-09": Reading(5.0, 8.0, 2.5, 3.8, 1, "comb mesh depth at least 4 mm"),
    "D-3-10": Reading(120.0, 135.0, 100.0, 110.0, 0, "manufacturer's range: 115-140 mm"),
    "D-4-02": Reading(1.0, 2.5, 3.5, 5.0, 1, "manufacturer's range: 1-3 mm"),
    "D-4-08": Reading(0.2, 1.0, 1.8, 2.5, 1, "manufacturer's limit: 1.5 mm"),
}
# rope diameters: nominal per unit, a healthy rope a little under it; discard below 90 %
_ROPES: Final = {"A-3-08": (10.0, 12.0, 13.0, 16.0), "A-3-10": (6.0, 8.0), "B-3-04": (10.0, 12.0, 13.0),
                 "B-3-06": (6.0, 8.0), "C-3-06": (6.0, 8.0), "C-3-08": (6.0, 8.0)}
_SIGNED: Final = frozenset({"A-1-23", "B-1-20"})  # stopping accuracy: above or below the landing

NOTES_ADJUSTED: Final = ("adjusted and re-checked", "cleaned, lubricated and adjusted", "re-tightened and re-tested")
NOTES_REPLACED: Final = ("worn part replaced", "replaced with the manufacturer's spare part", "replaced and tested")
NOTES_DEFECT: Final = ("out of limit: unit to be repaired", "defect reported to the user unit",
                       "repair scheduled; hazard reported")


@dataclass(frozen=True, slots=True)
class Entry:
    result: str
    measured_value: float | None
    note: str

    def body(self) -> dict[str, Any]:
        return {"result": self.result, "measured_value": self.measured_value, "note": self.note}


def entry_for(item: dict[str, Any], *, seed: int, unit_id: str, visit_id: str) -> Entry:
    """The technician's entry for one item of GET /api/v1/work-orders/{id} (`code`, `measurement`)."""
    code = item["code"]
    r = seeds.rng(seed, "item", visit_id, code)
    u = r.random()
    result = ("defect" if u < P_DEFECT else "replaced" if u < P_DEFECT + P_REPLACED
              else "adjusted" if u < P_DEFECT + P_REPLACED + P_ADJUSTED else "ok")
    m = item.get("measurement")
    note = {"ok": "", "adjusted": r.choice(NOTES_ADJUSTED), "replaced": r.choice(NOTES_REPLACED),
            "defect": r.choice(NOTES_DEFECT)}[result]
    if not m:
        return Entry(result, None, note)
    value, limit_note = _value(code, m, r, seed=seed, unit_id=unit_id, bad=result == "defect")
    if limit_note:
        note = f"{note}; {limit_note}" if note else limit_note
    return Entry(result, value, note)


def _value(code: str, m: dict[str, Any], r: random.Random, *, seed: int, unit_id: str, bad: bool
           ) -> tuple[float, str]:
    if code in _ROPES:
        nominal = seeds.rng(seed, "rope", unit_id, code).choice(_ROPES[code])
        frac = r.uniform(0.84, 0.89) if bad else r.uniform(0.95, 0.99)
        return round(nominal * frac, 2), f"nominal {nominal:g} mm; discard below {nominal * 0.9:.1f} mm"
    spec = READINGS.get(code) or _generic(m)
    lo, hi = (spec.bad_lo, spec.bad_hi) if bad else (spec.lo, spec.hi)
    v = round(r.uniform(lo, hi), spec.decimals)
    if code in _SIGNED and r.random() < 0.5:
        v = -v if bad else v
    if not bad:  # a healthy reading always satisfies the encoded limit, whatever the table says
        v = _inside(v, m)
    return v, spec.limit_note


def _generic(m: dict[str, Any]) -> Reading:
    """An item this table does not know (a newer checklist): stay inside whatever limit it encodes."""
    lo, hi = m.get("min"), m.get("max")
    if lo is not None and hi is not None:
        span = hi - lo
        return Reading(lo + 0.2 * span, hi - 0.2 * span, hi + 0.1 * span + 0.1, hi + 0.3 * span + 0.2)
    if lo is not None:
        return Reading(lo * 1.1 + 0.5, lo * 1.7 + 1.0, lo * 0.6, lo * 0.9)
    if hi is not None:
        return Reading(hi * 0.3, hi * 0.8, hi * 1.05 + 0.1, hi * 1.3 + 0.2)
    return Reading(0.5, 3.0, 4.0, 6.0, 1, "limit per the manufacturer's documentation")


def _inside(v: float, m: dict[str, Any]) -> float:
    lo, hi = m.get("min"), m.get("max")
    if lo is not None and v < lo:
        v = lo
    if hi is not None and v > hi:
        v = hi
    return v
