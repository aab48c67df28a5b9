"""Statutory checklists as data: versioned JSON files in maintenance/checklists/.

A work order copies the items of its kind when it is created and records the checklist id
and version, so a record stays interpretable after a newer version is published.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson

from liftwatch.vocab import PLAN_KINDS

__all__ = ["PLAN_KINDS", "Checklist", "Item", "Measurement", "Seasonal", "all_checklists", "checklist_for",
           "checklist_ids_by_unit_kind", "get"]


@dataclass(frozen=True, slots=True)
class Measurement:
    quantity: str
    unit: str
    min: float | None
    max: float | None
    limit_source: str

    def violation(self, value: float) -> str | None:
        """Why `value` is outside the limit, or None."""
        if self.min is not None and value < self.min:
            return f"{value:g} {self.unit} is below the minimum {self.min:g} {self.unit}"
        if self.max is not None and value > self.max:
            return f"{value:g} {self.unit} is above the maximum {self.max:g} {self.unit}"
        return None


@dataclass(frozen=True, slots=True)
class Seasonal:
    """An item the text ties to a season (D-2-05 before the rainy season, D-3-12 before winter)."""

    before: str  # rainy_season | winter
    note_zh: str
    note_en: str


@dataclass(frozen=True, slots=True)
class Item:
    code: str
    kind: str
    seq: int
    name_zh: str
    name_en: str
    requirement_zh: str
    requirement_en: str
    test_item: bool
    measurement: Measurement | None
    seasonal: Seasonal | None = None


@dataclass(frozen=True)
class Checklist:
    checklist_id: str
    version: int
    title_en: str
    interval_days: dict[str, int]
    includes: dict[str, tuple[str, ...]]
    items: tuple[Item, ...]
    raw: dict[str, Any]
    applies_to: tuple[str, ...] = ()
    #: where the wording comes from when it is not the official text (Annexes B-D: a transcription)
    provenance: dict[str, Any] | None = None

    def items_for(self, kind: str) -> list[Item]:
        kinds = set(self.includes[kind])
        return [i for i in self.items if i.kind in kinds]

    def item(self, code: str) -> Item | None:
        return next((i for i in self.items if i.code == code), None)


def _parse(doc: dict[str, Any]) -> Checklist:
    items = []
    for it in doc["items"]:
        m = it.get("measurement")
        season = it.get("seasonal")
        items.append(Item(
            code=it["code"], kind=it["kind"], seq=it["seq"], name_zh=it["name_zh"], name_en=it["name_en"],
            requirement_zh=it["requirement_zh"], requirement_en=it["requirement_en"], test_item=it["test_item"],
            measurement=Measurement(m["quantity"], m["unit"], m.get("min"), m.get("max"), m["limit_source"]) if m else None,
            seasonal=Seasonal(season["before"], season["note_zh"], season["note_en"]) if season else None,
        ))
    kinds = doc["kinds"]
    return Checklist(
        checklist_id=doc["checklist_id"], version=doc["version"], title_en=doc.get("title_en", ""),
        interval_days={k: v["interval_days"] for k, v in kinds.items()},
        includes={k: tuple(v["includes"]) for k, v in kinds.items()},
        items=tuple(items), raw=doc, applies_to=tuple(doc.get("applies_to", ())),
        provenance=doc.get("provenance"),
    )


@lru_cache(maxsize=1)
def all_checklists() -> dict[tuple[str, int], Checklist]:
    found = {}
    for entry in resources.files("maintenance.checklists").iterdir():
        if entry.name.endswith(".json"):
            cl = _parse(orjson.loads(entry.read_bytes()))
            found[(cl.checklist_id, cl.version)] = cl
    return found


def get(checklist_id: str, version: int | None = None) -> Checklist | None:
    lists = all_checklists()
    if version is not None:
        return lists.get((checklist_id, version))
    versions = [v for (cid, v) in lists if cid == checklist_id]
    return lists[(checklist_id, max(versions))] if versions else None


def checklist_for(unit_kind: str) -> Checklist | None:
    """The newest checklist whose `applies_to` names this unit kind, or None."""
    newest: Checklist | None = None
    for cl in all_checklists().values():
        if unit_kind in cl.applies_to and (newest is None or cl.version > newest.version):
            newest = cl
    return newest


def checklist_ids_by_unit_kind() -> dict[str, str]:
    """Unit kind -> checklist id, from the data files' own `applies_to`."""
    out: dict[str, str] = {}
    for cl in sorted(all_checklists().values(), key=lambda c: c.version):
        for unit_kind in cl.applies_to:
            out[unit_kind] = cl.checklist_id
    return out
