"""Registry CSV import/export through the real CLI and database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from liftwatch.errors import ImportFileError
from liftwatch.registry import COLUMN_NAMES, import_units

HEADER = ",".join(COLUMN_NAMES)
GOOD = [
    "31101234567890123456,沪01234,traction,S1,静安大厦,南京西路1号,静安区,上海,31.2304,121.4737,MC1,申达电梯维保,UU1,静安物业,GeN2,2015-06-01,18,1.75,1000,2026-03-01,2027-02-28,in_service",
    "EL-2,,escalator,S1,静安大厦,南京西路1号,静安区,上海,31.2304,121.4737,MC1,,UU1,,,,,,,,,",
    "EL-3,沪09999,traction,S2,\"Tower, B\",,,上海,31.1,121.5,MC2,Other Lifts,UU1,,3300AP,2020-01-31,6,1.0,800,2026-01-10,2027-01-09,out_of_service",
]


def _csv(tmp_path: Path, rows: list[str], name: str = "units.csv") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return p


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liftwatch", *args], capture_output=True, text=True)


def _counts(conn: psycopg.Connection) -> tuple[int, int, int]:
    return tuple(conn.execute(
        "SELECT (SELECT count(*) FROM units), (SELECT count(*) FROM sites), (SELECT count(*) FROM companies)"
    ).fetchone())


def test_import_then_export_round_trip(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    src = _csv(tmp_path, GOOD)
    r = _cli("units", "import", str(src))
    assert r.returncode == 0, r.stderr
    assert "3 rows: 3 inserted" in r.stdout
    assert _counts(conn) == (3, 2, 3)
    out = tmp_path / "export.csv"
    assert _cli("units", "export", "-o", str(out)).returncode == 0
    exported = out.read_text(encoding="utf-8").splitlines()
    assert exported[0] == HEADER and len(exported) == 4
    # re-importing the export changes nothing
    r = _cli("units", "import", str(out))
    assert r.returncode == 0, r.stderr
    assert "3 rows: 0 inserted, 0 updated, 3 unchanged" in r.stdout
    again = tmp_path / "again.csv"
    _cli("units", "export", "-o", str(again))
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    row = conn.execute("SELECT kind, floors, rated_load_kg, status FROM units WHERE unit_id = 'EL-3'").fetchone()
    assert row == ("traction", 6, 800, "out_of_service")
    assert conn.execute("SELECT name FROM sites WHERE site_id = 'S2'").fetchone()[0] == "Tower, B"


def test_update_by_unit_id(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as c:
        import_units(c, _csv(tmp_path, GOOD).open(encoding="utf-8"))
    changed = [GOOD[0].replace(",18,", ",20,")] + GOOD[1:]
    with psycopg.connect(db_url) as c:
        result = import_units(c, _csv(tmp_path, changed, "b.csv").open(encoding="utf-8"))
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 2)
    assert conn.execute("SELECT floors FROM units WHERE unit_id = '31101234567890123456'").fetchone()[0] == 20


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ("EL-9,,elevator,S1,x,,,,,,,,,,,,,,,,,", "column kind"),
        ("EL-9,,traction,S1,x,,,,91,0,,,,,,,,,,,,", "column lat"),
        ("EL-9,,traction,S1,x,,,,,,,,,,,2020-13-01,,,,,,", "column installed_on"),
        ("bad id!,,traction,S1,x,,,,,,,,,,,,,,,,,", "column unit_id"),
        ("EL-2,,traction,S1,x,,,,,,,,,,,,,,,,,", "already on line 3"),
        ("EL-9,沪01234,traction,S1,x,,,,,,,,,,,,,,,,,", "conflicts with an existing record"),
        ("EL-9,,traction,S1,x,,,,,,,,,,,,,,,2026-05-01,2026-01-01,", "next_inspection_due is before"),
    ],
)
def test_bad_row_names_its_line_and_changes_nothing(
    db_url: str, conn: psycopg.Connection, tmp_path: Path, bad_row: str, message: str
) -> None:
    rows = GOOD + [bad_row]  # the bad row is line 5 (header is line 1)
    r = _cli("units", "import", str(_csv(tmp_path, rows)))
    assert r.returncode == 1
    assert "line 5" in r.stderr and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert _counts(conn) == (0, 0, 0)


def test_unknown_column_and_missing_required(db_url: str, tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("unit_id,kind,colour\nA,traction,red\n")
    with psycopg.connect(db_url) as c, pytest.raises(ImportFileError, match="line 1: header lacks"):
        import_units(c, p.open())
