"""The TSG T5002-2017 checklist data files (Annexes A-D), checked against the reference tables.

No database: this only reads maintenance/checklists/*.json and the reference TSVs in
shared/reference/ (beside the checkout: /work/shared here and in CI). A missing TSV is a
failure, not a skip: without it the Chinese text cannot be verified.

Annex A (traction) is the regulation's text; Annexes B (hydraulic), C (dumbwaiter) and D
(escalator and moving walk) are a third-party transcription and say so in `provenance`.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from maintenance import checklist as checklists

REPO = Path(__file__).resolve().parents[1]
CHECKLIST_DIR = REPO / "maintenance" / "checklists"
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"

KINDS = ["half_monthly", "quarterly", "semi_annual", "annual"]
INTERVALS = {"half_monthly": 15, "quarterly": 90, "semi_annual": 180, "annual": 365}
TABLE_NO = {"half_monthly": 1, "quarterly": 2, "semi_annual": 3, "annual": 4}
TEST_WORDS = ("试验", "测试", "校验", "检测")  # note A-2; 监测 (monitoring) is not one of them
LIMIT_SOURCES = {"regulation", "standard", "manufacturer"}
MEASUREMENT_KEYS = {"quantity", "quantity_zh", "unit", "min", "max", "limit_source", "note"}
UNITS = {"mm", "m", "MΩ", "%", "×"}
UNIT_KINDS = ("traction", "hydraulic", "dumbwaiter", "escalator", "moving_walk")
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
ITEM_KEYS = {
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
HEADER_KEYS = {"checklist_id", "version", "title_zh", "title_en", "source", "applies_to", "kinds", "items"}
SEASONAL = {
    "D-2-05": ("rainy_season", "雨季到来之前必须完成"),
    "D-3-12": ("winter", "冬季到来之前必须完成"),
}

M = "manufacturer"
S = "standard"
R = "regulation"


@dataclass(frozen=True)
class Annex:
    letter: str
    checklist_id: str
    applies_to: tuple[str, ...]
    counts: dict[str, int]
    test_items: tuple[str, ...]
    # code -> (unit, min, max, limit_source): every measured item, spelled out
    measured: dict[str, tuple[str, float | None, float | None, str]]
    # code -> phrases its interval_note must contain
    interval_notes: dict[str, tuple[str, ...]]
    transcription: bool
    version: int = 1

    @property
    def path(self) -> Path:
        return CHECKLIST_DIR / f"{self.checklist_id}.v{self.version}.json"

    @property
    def tsv(self) -> Path:
        return REFERENCE_DIR / f"tsg-t5002-2017-annex-{self.letter.lower()}.tsv"

    @property
    def total(self) -> int:
        return sum(self.counts.values())


ANNEXES = [
    Annex(
        letter="A",
        checklist_id="tsg-t5002-2017-traction",
        applies_to=("traction",),
        counts={"half_monthly": 31, "quarterly": 13, "semi_annual": 15, "annual": 17},
        test_items=("A-1-06", "A-4-04", "A-4-05", "A-4-06", "A-4-07", "A-4-08"),
        measured={
            "A-1-05": ("mm", None, None, M),
            "A-1-23": ("mm", -10, 10, S),
            "A-1-29": ("mm", 7, None, R),
            "A-2-02": ("mm", None, None, M),
            "A-2-07": ("mm", None, None, M),
            "A-2-10": ("mm", None, None, M),
            "A-3-03": ("mm", None, None, M),
            "A-3-08": ("mm", None, None, S),
            "A-3-10": ("mm", None, None, M),
            "A-3-11": ("mm", None, 10, S),
            "A-3-13": ("mm", None, None, S),
            "A-4-03": ("mm", None, None, M),
            "A-4-05": ("MΩ", 0.5, None, S),
        },
        interval_notes={"A-4-06": ("2 years", "15 years", "every year")},
        transcription=False,
    ),
    Annex(
        letter="B",
        checklist_id="tsg-t5002-2017-hydraulic",
        applies_to=("hydraulic",),
        counts={"half_monthly": 30, "quarterly": 13, "semi_annual": 9, "annual": 14},
        test_items=("B-4-03", "B-4-04", "B-4-14"),
        measured={
            "B-1-20": ("mm", None, None, S),
            "B-1-26": ("mm", 7, None, R),
            "B-2-01": ("%", None, 170, R),
            "B-2-03": ("×", None, 2.3, R),
            "B-2-07": ("mm", None, None, M),
            "B-2-08": ("mm", None, None, M),
            "B-2-10": ("mm", None, None, M),
            "B-3-04": ("mm", None, None, S),
            "B-3-06": ("mm", None, None, M),
            "B-4-03": ("MΩ", 0.5, None, S),
            "B-4-14": ("mm", None, None, S),
        },
        interval_notes={"B-4-04": ("every 2 years", "annual")},
        transcription=True,
    ),
    Annex(
        letter="C",
        checklist_id="tsg-t5002-2017-dumbwaiter",
        applies_to=("dumbwaiter",),
        counts={"half_monthly": 20, "quarterly": 8, "semi_annual": 10, "annual": 14},
        # C-3-03 制动器上检测开关: the rule is literal, so the brake detection switch is tested
        test_items=("C-3-03", "C-4-05", "C-4-06"),
        measured={
            "C-1-17": ("mm", 5, None, R),
            "C-2-02": ("mm", None, None, M),
            "C-2-05": ("mm", None, None, M),
            "C-2-07": ("mm", None, None, M),
            "C-3-06": ("mm", None, None, S),
            "C-3-08": ("mm", None, None, M),
            "C-3-09": ("mm", None, None, S),
            "C-4-03": ("mm", None, None, M),
            "C-4-04": ("mm", None, None, M),
            "C-4-05": ("MΩ", None, None, S),
        },
        interval_notes={"C-4-06": ("every 5 years", "annual")},
        transcription=True,
    ),
    Annex(
        letter="D",
        checklist_id="tsg-t5002-2017-escalator",
        applies_to=("escalator", "moving_walk"),
        counts={"half_monthly": 33, "quarterly": 5, "semi_annual": 12, "annual": 13},
        test_items=("D-4-02", "D-4-10"),
        measured={
            "D-1-21": ("mm", None, 4, S),
            "D-2-01": ("%", 0, 2, R),
            "D-3-01": ("mm", None, None, M),
            "D-3-03": ("mm", None, None, M),
            "D-3-05": ("m", None, None, S),
            "D-3-09": ("mm", None, None, S),
            "D-3-10": ("mm", None, None, M),
            "D-4-02": ("mm", None, None, M),
            "D-4-08": ("mm", None, None, M),
        },
        interval_notes={},
        transcription=True,
    ),
]
BY_LETTER = {a.letter: a for a in ANNEXES}

# Figures the regulation's own text states as limits, encoded exactly, with the figure as it
# appears in requirement_zh. Every other digit in a requirement is listed in NOT_A_LIMIT.
STATED = {
    "A-1-29": ("mm", 7, None, "不小于7mm"),
    "B-1-26": ("mm", 7, None, "不小于7mm"),
    "B-2-01": ("%", None, 170, "不得高于满负荷压力的170%"),
    "B-2-03": ("×", None, 2.3, "不得高于满负荷压力的2.3倍"),
    "C-1-17": ("mm", 5, None, "不小于5mm"),
    "D-2-01": ("%", 0, 2, "速度允差为0～＋2％"),
}
NOT_A_LIMIT = {"A-4-04": "125% of the rated load is the load for the braking test, not a limit"}


def _load(annex: Annex) -> dict:
    return json.loads(annex.path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=ANNEXES, ids=[a.letter for a in ANNEXES])
def annex(request: pytest.FixtureRequest) -> Annex:
    return request.param


@pytest.fixture(scope="module")
def doc(annex: Annex) -> dict:
    return _load(annex)


@pytest.fixture(scope="module")
def items(doc: dict) -> list[dict]:
    return doc["items"]


def _tsv_rows(path: Path, expected_rows: int) -> list[dict]:
    # called from the test body, not a fixture, so a missing file is a FAILED test
    if not path.is_file():
        pytest.fail(
            f"reference table not found at {path}: the checklist's Chinese text is verified "
            "against it; put shared/reference/ beside the checkout (as /work/shared)"
        )
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == expected_rows, f"{path.name} has {len(rows)} rows, expected {expected_rows}"
    return rows


def _by_code(items: list[dict]) -> dict[str, dict]:
    return {it["code"]: it for it in items}


def _all_items() -> dict[str, dict]:
    return {it["code"]: it for a in ANNEXES for it in _load(a)["items"]}


# --- per annex -----------------------------------------------------------------------------


def test_header(annex: Annex, doc: dict) -> None:
    expected_keys = HEADER_KEYS | ({"provenance"} if annex.transcription else set())
    assert set(doc) == expected_keys
    assert doc["checklist_id"] == annex.checklist_id
    assert doc["version"] == annex.version
    assert annex.path.name == f"{doc['checklist_id']}.v{doc['version']}.json"
    assert doc["applies_to"] == list(annex.applies_to)
    assert doc["source"].startswith("TSG T5002-2017")
    assert f"Annex {annex.letter}" in doc["source"]
    assert doc["title_zh"].strip() and doc["title_en"].strip()
    assert not CJK.search(doc["title_en"])


def test_provenance(annex: Annex, doc: dict) -> None:
    if not annex.transcription:
        assert "provenance" not in doc  # Annex A is the regulation's text, not a transcription
        return
    p = doc["provenance"]
    assert p["kind"] == "transcription"
    assert "transcription" in p["status"] and "not yet checked" in p["status"]
    assert "MING92-sudo/miniprogram-1" in p["transcribed_from"]
    assert "checklist-template.js" in p["transcribed_from"]
    assert p["reference_table"] == f"shared/reference/{annex.tsv.name}"
    assert "new version" in p["note"] and "never by editing" in p["note"]
    assert "see provenance" in doc["source"]


def test_kinds_accumulate(doc: dict) -> None:
    assert list(doc["kinds"]) == KINDS
    for i, kind in enumerate(KINDS):
        assert doc["kinds"][kind] == {"interval_days": INTERVALS[kind], "includes": KINDS[: i + 1]}


def test_counts(annex: Annex, items: list[dict]) -> None:
    assert len(items) == annex.total
    assert Counter(it["kind"] for it in items) == annex.counts


def test_codes_unique_and_in_table_order(annex: Annex, items: list[dict]) -> None:
    codes = [it["code"] for it in items]
    assert len(set(codes)) == len(codes)
    letter = annex.letter
    expected = [f"{letter}-{TABLE_NO[k]}-{n:02d}" for k in KINDS for n in range(1, annex.counts[k] + 1)]
    assert codes == expected
    for it in items:
        assert it["code"] == f"{letter}-{TABLE_NO[it['kind']]}-{it['seq']:02d}"


def test_items_match_reference_table(annex: Annex, items: list[dict]) -> None:
    tsv_rows = _tsv_rows(annex.tsv, annex.total)
    assert [it["code"] for it in items] == [r["item_code"] for r in tsv_rows]
    for it, row in zip(items, tsv_rows, strict=True):
        assert it["kind"] == row["kind"], it["code"]
        assert it["seq"] == int(row["seq"]), it["code"]
        # byte-identical Chinese wording
        assert it["name_zh"].encode() == row["name_zh"].encode(), it["code"]
        assert it["requirement_zh"].encode() == row["requirement_zh"].encode(), it["code"]


def test_english_present_and_without_chinese(items: list[dict]) -> None:
    for it in items:
        for field_name in ("name_en", "requirement_en"):
            text = it[field_name]
            assert isinstance(text, str) and text.strip(), (it["code"], field_name)
            assert text == text.strip(), (it["code"], field_name)
            assert not CJK.search(text), (it["code"], field_name, text)
            assert text.isascii() and text.isprintable(), (it["code"], field_name, text)


def test_test_items_follow_note_a2(annex: Annex, items: list[dict]) -> None:
    for it in items:
        names_a_test = any(w in it["name_zh"] or w in it["requirement_zh"] for w in TEST_WORDS)
        assert it["test_item"] is names_a_test, it["code"]
    # the result, spelled out so a change to the data is noticed
    assert tuple(it["code"] for it in items if it["test_item"]) == annex.test_items


def test_item_keys(annex: Annex, items: list[dict]) -> None:
    for it in items:
        extra = set()
        if it["code"] in annex.interval_notes:
            extra.add("interval_note")
        if it["code"] in SEASONAL:
            extra.add("seasonal")
        assert set(it) == ITEM_KEYS | extra, it["code"]


def test_interval_notes(annex: Annex, items: list[dict]) -> None:
    by = _by_code(items)
    for code, phrases in annex.interval_notes.items():
        note = by[code]["interval_note"]
        assert isinstance(note, str) and note.isascii() and not CJK.search(note), code
        for phrase in phrases:
            assert phrase in note, (code, phrase)
        # the calibration interval in the note is the one the item's own name states
        years = re.search(r"每(\d+)年", by[code]["name_zh"])
        assert years and f"every {years.group(1)} years" in note, code


def test_measured_items(annex: Annex, items: list[dict]) -> None:
    found = {
        it["code"]: (m["unit"], m["min"], m["max"], m["limit_source"])
        for it in items
        if (m := it["measurement"]) is not None
    }
    assert found == annex.measured


def test_measurements_well_formed(items: list[dict]) -> None:
    measured = [it for it in items if it["measurement"] is not None]
    assert measured, "no measured items"
    for it in measured:
        m = it["measurement"]
        code = it["code"]
        assert set(m) == MEASUREMENT_KEYS, code
        assert m["quantity"].strip() and not CJK.search(m["quantity"]), code
        assert m["quantity_zh"].strip(), code
        assert m["unit"] in UNITS, code
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
            assert "制造单位" in it["requirement_zh"], code
        if m["limit_source"] == "regulation":
            assert code in STATED, code


# --- across the annexes --------------------------------------------------------------------


def test_stated_quantities_encoded_exactly() -> None:
    """The limits the regulation's text states are encoded exactly, and only from that text."""
    every = _all_items()
    for code, (unit, lo, hi, wording) in STATED.items():
        it = every[code]
        assert wording in it["requirement_zh"], code
        m = it["measurement"]
        assert (m["unit"], m["min"], m["max"], m["limit_source"]) == (unit, lo, hi, "regulation"), code
    regulation = {c for c, it in every.items() if it["measurement"] and it["measurement"]["limit_source"] == "regulation"}
    assert regulation == set(STATED)


def test_every_figure_in_a_requirement_is_encoded() -> None:
    """A requirement that states a number is a measured item with that limit (or a listed exception)."""
    for code, it in _all_items().items():
        if re.search(r"\d", it["requirement_zh"]):
            assert code in STATED or code in NOT_A_LIMIT, (code, it["requirement_zh"])


def test_handrail_speed_range() -> None:
    m = _all_items()["D-2-01"]["measurement"]
    assert (m["unit"], m["min"], m["max"]) == ("%", 0, 2)
    assert "handrail" in m["quantity"] and "step" in m["quantity"]


def test_seasonal_items() -> None:
    every = _all_items()
    assert sorted(c for c, it in every.items() if "seasonal" in it) == sorted(SEASONAL)
    for code, (before, note_zh) in SEASONAL.items():
        season = every[code]["seasonal"]
        assert set(season) == {"before", "note_zh", "note_en"}, code
        assert season["before"] == before, code
        assert season["note_zh"] == note_zh, code
        assert note_zh in every[code]["requirement_zh"], code  # the text itself says so
        assert season["note_en"].isascii() and season["note_en"].strip(), code
        assert ("rainy season" if before == "rainy_season" else "winter") in season["note_en"], code
    # no other requirement mentions a season
    for code, it in every.items():
        if code not in SEASONAL:
            assert not re.search("雨季|冬季|夏季|季节", it["requirement_zh"]), code


def test_every_file_is_a_known_annex() -> None:
    assert sorted(p.name for p in CHECKLIST_DIR.glob("*.json")) == sorted(a.path.name for a in ANNEXES)


def test_every_unit_kind_has_exactly_one_checklist() -> None:
    owners: dict[str, set[str]] = {kind: set() for kind in UNIT_KINDS}
    for path in CHECKLIST_DIR.glob("*.json"):
        d = json.loads(path.read_text(encoding="utf-8"))
        assert d["applies_to"], path.name
        for kind in d["applies_to"]:
            assert kind in owners, (path.name, kind)
            owners[kind].add(d["checklist_id"])
    assert {kind: len(ids) for kind, ids in owners.items()} == {kind: 1 for kind in UNIT_KINDS}


def test_missing_reference_table_fails(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="reference table not found"):
        _tsv_rows(tmp_path / "tsg-t5002-2017-annex-x.tsv", 1)


# --- through the parser the application uses -----------------------------------------------


def test_loaded_by_the_application() -> None:
    loaded = checklists.all_checklists()
    for annex in ANNEXES:
        cl = loaded[(annex.checklist_id, annex.version)]
        assert cl.applies_to == annex.applies_to
        running = 0
        for kind in KINDS:
            running += annex.counts[kind]
            assert len(cl.items_for(kind)) == running, (annex.letter, kind)
        assert (cl.provenance is not None) is annex.transcription
        if annex.transcription:
            assert cl.provenance["kind"] == "transcription"
    expected = {kind: a.checklist_id for a in ANNEXES for kind in a.applies_to}
    assert set(expected) == set(UNIT_KINDS)
    for kind, checklist_id in expected.items():
        cl = checklists.checklist_for(kind)
        assert cl is not None and cl.checklist_id == checklist_id, kind
    assert checklists.checklist_ids_by_unit_kind() == expected
    assert checklists.checklist_for("lift") is None

    d = checklists.get("tsg-t5002-2017-escalator")
    rainy, winter = d.item("D-2-05").seasonal, d.item("D-3-12").seasonal
    assert rainy is not None and rainy.before == "rainy_season"
    assert winter is not None and winter.before == "winter"
    assert all(it.seasonal is None for it in d.items if it.code not in SEASONAL)


@pytest.mark.parametrize(
    ("checklist_id", "code", "value", "violates"),
    [
        ("tsg-t5002-2017-escalator", "D-2-01", 2.5, True),
        ("tsg-t5002-2017-escalator", "D-2-01", 2.0, False),
        ("tsg-t5002-2017-escalator", "D-2-01", 1.0, False),
        ("tsg-t5002-2017-escalator", "D-2-01", 0.0, False),
        ("tsg-t5002-2017-escalator", "D-2-01", -0.5, True),
        ("tsg-t5002-2017-hydraulic", "B-2-01", 171, True),
        ("tsg-t5002-2017-hydraulic", "B-2-01", 170, False),
        ("tsg-t5002-2017-hydraulic", "B-2-01", 140, False),
        ("tsg-t5002-2017-hydraulic", "B-2-03", 2.4, True),
        ("tsg-t5002-2017-hydraulic", "B-2-03", 2.3, False),
        ("tsg-t5002-2017-hydraulic", "B-2-03", 1.8, False),
        ("tsg-t5002-2017-hydraulic", "B-1-26", 6.5, True),
        ("tsg-t5002-2017-dumbwaiter", "C-1-17", 4.5, True),
        ("tsg-t5002-2017-dumbwaiter", "C-1-17", 5.0, False),
        ("tsg-t5002-2017-escalator", "D-1-21", 4.5, True),
        ("tsg-t5002-2017-escalator", "D-1-21", 3.0, False),
    ],
)
def test_measurement_violation(checklist_id: str, code: str, value: float, violates: bool) -> None:
    cl = checklists.get(checklist_id)
    assert cl is not None
    item = cl.item(code)
    assert item is not None and item.measurement is not None
    problem = item.measurement.violation(value)
    if violates:
        assert problem is not None and item.measurement.unit in problem
    else:
        assert problem is None


def test_record_only_measurements_never_refuse() -> None:
    """Items with no encoded limit take any reading: the technician records the limit instead."""
    for annex in ANNEXES:
        cl = checklists.get(annex.checklist_id, annex.version)
        for it in cl.items:
            m = it.measurement
            if m is not None and m.min is None and m.max is None:
                assert m.violation(-1e9) is None and m.violation(1e9) is None, it.code
