"""The shared vocabularies (liftwatch/vocab.py) spell exactly what the database's CHECK
constraints allow, so neither side can gain or lose a word alone."""

from __future__ import annotations

import re
from typing import get_args

import psycopg
import pytest

from liftwatch.vocab import COVERED_BY, PLAN_KINDS, UNIT_KINDS
from maintenance.routes_registry import UnitKind as _UK


def _allowed(dsn: str, table: str, column: str) -> set[str]:
    with psycopg.connect(dsn) as c:
        defs = [r[0] for r in c.execute(
            """SELECT pg_get_constraintdef(oid) FROM pg_constraint
                WHERE conrelid = %s::regclass AND contype = 'c'""", (table,)).fetchall()]
    mine = [d for d in defs if re.search(rf"\(\(?{column}\b", d) and "ANY" in d]
    assert len(mine) == 1, (table, column, defs)
    return set(re.findall(r"'([a-z_]+)'::text", mine[0]))


@pytest.mark.parametrize(("table", "column", "words"), [
    ("units", "kind", UNIT_KINDS),
    ("maintenance_plans", "kind", PLAN_KINDS),
    ("work_orders", "kind", PLAN_KINDS),
    ("legacy_maintenance", "kind", PLAN_KINDS),
])
def test_vocabulary_matches_the_database(db_url: str, table: str, column: str, words: tuple[str, ...]) -> None:
    assert _allowed(db_url, table, column) == set(words)


def test_covering_kinds_match_the_database_function(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        for kind in PLAN_KINDS:
            got = c.execute("SELECT liftwatch_covering_kinds(%s)", (kind,)).fetchone()[0]
            assert tuple(got) == COVERED_BY[kind]


def test_api_unit_kind_literal_matches_the_vocabulary() -> None:
    assert set(get_args(_UK)) == set(UNIT_KINDS)
