"""The TSG T5002-2017 traction checklist data file, checked against the reference table.

No database: this only reads maintenance/checklists/tsg-t5002-2017-traction.v1.json and the
reference TSV in shared/reference/ (beside the checkout: /work/shared here and in CI). A
missing TSV is a failure, not a skip: without it the Chinese text cannot be verified.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKLIST = REPO / "maintenance" / "checklists" / "tsg-t5002-2017-traction.v1.json"
TSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tsg-t5002-2017-annex-a.tsv"

KINDS = ["half_monthly", "quarterly", "semi_annual", "annual"]
COUNTS = {"half_monthly": 31, "quarterly": 13, "semi_annual": 15, "annual": 17}
INTERVALS = {"half_monthly": 15, "quarterly": 90, "semi_annual": 180, "annual": 365}
TABLE_NO = {"half_monthly": 1, "quarterly": 2, "semi_annual": 3, "annual": 4}
TEST_WORDS = ("试验", "测试", "校验", "检测")  # note A-2
LIMIT_SOURCES = {"regulation", "standard", "manufacturer"}
MEASUREMENT_KEYS = {"quantity", "quantity_zh", "unit", "min", "max", "limit_source", "note"}
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(CHECKLIST.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def items(doc: dict) -> list[dict]:
    return doc["items"]


def _tsv_rows() -> list[dict]:
    # called from the test body, not a fixture, so a missing file is a FAILED test
    if not TSV.is_file():
        pytest.fail(
            f"reference table not found at {TSV}: the checklist's Chinese text is verified "
            "against it; put shared/reference/ beside the checkout (as /work/shared)"
        )
    with TSV.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 76, f"reference table has {len(rows)} rows, expected 76"
    return rows


def _by_code(items: list[dict]) -> dict[str, dict]:
    return {it["code"]: it for it in items}


def test_header(doc: dict) -> None:
    assert doc["checklist_id"] == "tsg-t5002-2017-traction"
    assert doc["version"] == 1
    assert CHECKLIST.name == f"{doc['checklist_id']}.v{doc['version']}.json"
    assert doc["applies_to"] == ["traction"]
    assert doc["source"].startswith("TSG T5002-2017")
    assert doc["title_zh"] and doc["title_en"]


def test_kinds_accumulate(doc: dict) -> None:
    assert list(doc["kinds"]) == KINDS
    for i, kind in enumerate(KINDS):
        assert doc["kinds"][kind] == {"interval_days": INTERVALS[kind], "includes": KINDS[: i + 1]}


def test_counts(items: list[dict]) -> None:
    assert len(items) == 76
    assert Counter(it["kind"] for it in items) == COUNTS


def test_codes_unique_and_in_table_order(items: list[dict]) -> None:
    codes = [it["code"] for it in items]
    assert len(set(codes)) == len(codes)
    expected = [f"A-{TABLE_NO[k]}-{n:02d}" for k in KINDS for n in range(1, COUNTS[k] + 1)]
    assert codes == expected
    for it in items:
        assert it["code"] == f"A-{TABLE_NO[it['kind']]}-{it['seq']:02d}"


def test_items_match_reference_table(items: list[dict]) -> None:
    tsv_rows = _tsv_rows()
    assert [it["code"] for it in items] == [r["item_code"] for r in tsv_rows]
    for it, row in zip(items, tsv_rows, strict=True):
        assert it["kind"] == row["kind"], it["code"]
        assert it["seq"] == int(row["seq"]), it["code"]
        # byte-identical Chinese wording
        assert it["name_zh"].encode() == row["name_zh"].encode(), it["code"]
        assert it["requirement_zh"].encode() == row["requirement_zh"].encode(), it["code"]


def test_english_present_and_without_chinese(items: list[dict]) -> None:
    for it in items:
        for field in ("name_en", "requirement_en"):
            text = it[field]
            assert isinstance(text, str) and text.strip(), (it["code"], field)
            assert text == text.strip(), (it["code"], field)
            assert not CJK.search(text), (it["code"], field, text)
            assert text.isascii() and text.isprintable(), (it["code"], field, text)


def test_test_items_follow_note_a2(items: list[dict]) -> None:
    for it in items:
        names_a_test = any(w in it["name_zh"] or w in it["requirement_zh"] for w in TEST_WORDS)
        assert it["test_item"] is names_a_test, it["code"]
    # the result, spelled out so a change to the data is noticed
    assert [it["code"] for it in items if it["test_item"]] == [
        "A-1-06",
        "A-4-04",
        "A-4-05",
        "A-4-06",
        "A-4-07",
        "A-4-08",
    ]


def test_item_keys(items: list[dict]) -> None:
    base = {
        "code",
        "kind",
        "seq",
        "name_zh",
        "requirement_zh",
        "name_en",
        "requirement_en",
        "test_item",
        "measurement",
    }
    for it in items:
        extra = {"interval_note"} if it["code"] == "A-4-06" else set()
        assert set(it) == base | extra, it["code"]


def test_a_4_06_interval_note(items: list[dict]) -> None:
    note = _by_code(items)["A-4-06"]["interval_note"]
    assert "2 years" in note and "15 years" in note and "every year" in note


def test_landing_door_lock_engagement(items: list[dict]) -> None:
    m = _by_code(items)["A-1-29"]["measurement"]
    assert m["quantity"] == "landing door lock engagement length"
    assert m["unit"] == "mm"
    assert m["min"] == 7
    assert m["max"] is None
    assert m["limit_source"] == "regulation"


def test_measurements_well_formed(items: list[dict]) -> None:
    measured = [it for it in items if it["measurement"] is not None]
    assert measured, "no measured items"
    for it in measured:
        m = it["measurement"]
        code = it["code"]
        assert set(m) == MEASUREMENT_KEYS, code
        assert m["quantity"].strip() and not CJK.search(m["quantity"]), code
        assert m["quantity_zh"].strip(), code
        assert m["unit"] in {"mm", "MΩ", "%", "m/s", "N", "kg", "s"}, code
        assert m["limit_source"] in LIMIT_SOURCES, code
        assert m["note"].strip(), code
        for bound in ("min", "max"):
            v = m[bound]
            assert v is None or (isinstance(v, int | float) and not isinstance(v, bool)), code
        if m["min"] is not None and m["max"] is not None:
            assert m["min"] <= m["max"], code
        if m["limit_source"] == "manufacturer":
            # the manufacturer's figure is recorded at the visit, never invented here
            assert m["min"] is None and m["max"] is None, code


def test_sourced_limits(items: list[dict]) -> None:
    by = _by_code(items)
    levelling = by["A-1-23"]["measurement"]
    assert (levelling["unit"], levelling["min"], levelling["max"]) == ("mm", -10, 10)
    insulation = by["A-4-05"]["measurement"]
    assert (insulation["unit"], insulation["min"]) == ("MΩ", 0.5)
    assert by["A-1-05"]["measurement"]["limit_source"] == "manufacturer"
