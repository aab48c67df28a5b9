"""The maintenance CLI: users add (password from stdin), keys new, maintenance schedule."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
from api_support import units_csv

from liftwatch import esign
from liftwatch.registry import import_units


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liftwatch", *args], input=stdin, capture_output=True,
                          text=True, env=dict(os.environ))


def test_users_add_reads_password_from_stdin(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        import_units(c, io.StringIO(units_csv()))
    r = _cli("users", "add", "--username", "zhang", "--name", "张伟", "--role", "technician", "--company", "MC1",
             "--certificate", "TQ-1", "--password-stdin", stdin="a long enough secret\n")
    assert r.returncode == 0, r.stderr
    with psycopg.connect(db_url) as c:
        row = c.execute("SELECT p.name, p.role, p.company_id, u.password_hash FROM users u JOIN people p USING (person_id)"
                        " WHERE username = 'zhang'").fetchone()
    assert row[:3] == ("张伟", "technician", "MC1") and row[3].startswith("$argon2id$")
    for args, message in [
        (("--username", "zhang", "--name", "X", "--role", "technician", "--company", "MC1"), "taken"),
        (("--username", "x2", "--name", "X", "--role", "technician"), "--company"),
        (("--username", "x3", "--name", "X", "--role", "technician", "--company", "UU1"), "maintenance company"),
        (("--username", "x4", "--name", "X", "--role", "technician", "--company", "NOPE"), "does not exist"),
    ]:
        r = _cli("users", "add", *args, "--password-stdin", stdin="a long enough secret\n")
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _cli("users", "add", "--username", "x5", "--name", "X", "--role", "admin", "--password-stdin", stdin="short\n")
    assert r.returncode == 1 and "at least 10" in r.stderr


def test_keys_new_writes_a_private_key_and_prints_the_public_key(tmp_path: Path) -> None:
    path = tmp_path / "me.key"
    r = _cli("keys", "new", str(path))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = esign.load_key_file(path)
    assert esign.b64url(esign.raw_public_key(key.public_key())) == r.stdout.strip()
    again = _cli("keys", "new", str(path))
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr


def test_maintenance_schedule_cli(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        import_units(c, io.StringIO(units_csv()))
    r = _cli("maintenance", "schedule")
    # two lifts and an escalator: every kind has its checklist, so every unit gets its four plans
    assert r.returncode == 0 and "12 plans and 12 work orders created" in r.stdout, r.stdout
    assert "no checklist" not in r.stdout and "kind no checklist applies to" not in r.stdout
    r = _cli("maintenance", "schedule")
    assert "0 plans and 0 work orders created" in r.stdout
