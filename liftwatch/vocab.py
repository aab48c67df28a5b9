"""The vocabularies every subsystem shares, one StrEnum each. The database's CHECK constraints
spell the same lists; tests/test_vocab.py compares the two, so neither can drift."""

from __future__ import annotations

from enum import StrEnum


class UnitKind(StrEnum):
    TRACTION = "traction"        # traction and positive-drive lifts: TSG T5002 Annex A
    HYDRAULIC = "hydraulic"      # Annex B
    DUMBWAITER = "dumbwaiter"    # 杂物电梯, service lifts for goods: Annex C
    ESCALATOR = "escalator"      # Annex D
    MOVING_WALK = "moving_walk"  # Annex D


class PlanKind(StrEnum):
    """Statutory maintenance kinds, shortest first; a longer visit covers the shorter ones' items."""

    HALF_MONTHLY = "half_monthly"
    QUARTERLY = "quarterly"
    SEMI_ANNUAL = "semi_annual"
    ANNUAL = "annual"


UNIT_KINDS: tuple[str, ...] = tuple(UnitKind)
PLAN_KINDS: tuple[str, ...] = tuple(PlanKind)
#: kinds of visit whose items include the key kind's (the annexes accumulate)
COVERED_BY: dict[str, tuple[str, ...]] = {k: PLAN_KINDS[i:] for i, k in enumerate(PLAN_KINDS)}
