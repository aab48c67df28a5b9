"""The simulated technicians' and safety managers' accounts: a private credentials file, and
`--bootstrap`, which creates what is missing.

Per maintenance company one technician `tech-<company_id>`, per user unit one safety manager
`uu-<company_id>`, each with a random password and an Ed25519 key enrolled through the API.
Logins are created with the public command line (`python -m liftwatch users add
--password-stdin`, the only way to create a login), never by importing the maintenance
service: the simulator is a client like any other. Passwords and private keys live only in
the credentials file (mode 0600), which is written before an account is created, so an
interrupted bootstrap never leaves a login whose password is lost.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liftwatch import esign
from simulators import seeds
from simulators.http_api import ApiCallError, ApiClient, Session

FILE_VERSION = 1
DEFAULT_PATH = Path(".demo/sim-accounts.json")
KEY_LABEL = "liftwatch simulate technicians"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")  # the users table's CHECK
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗"
_GIVEN = ("伟", "建国", "志强", "海涛", "晓东", "国华", "建军", "明", "丽华", "秀英", "磊", "军", "勇", "静", "敏",
          "立新", "春生", "永刚", "红梅", "文斌")


def technician_username(company_id: str) -> str:
    return _username("tech", company_id)


def manager_username(company_id: str) -> str:
    return _username("uu", company_id)


def _username(prefix: str, company_id: str) -> str:
    name = f"{prefix}-{re.sub(r'[^A-Za-z0-9._@-]', '-', company_id)}"
    if len(name) > 64:  # keep it unique: a hash of the full id after a readable head
        name = name[:55] + "-" + hashlib.blake2b(company_id.encode(), digest_size=4).hexdigest()
    assert _USERNAME.match(name), name
    return name


def person_name(company_id: str, role: str) -> str:
    r = seeds.rng(0, "person-name", role, company_id)
    return r.choice(_SURNAMES) + r.choice(_GIVEN)


@dataclass
class Account:
    username: str
    password: str
    role: str  # technician | user_unit
    company_id: str
    name: str
    certificate_no: str | None = None
    created: bool = False  # the login exists in the database
    key_id: int | None = None
    private_key: str | None = None  # base64url raw 32-byte Ed25519 private key

    def key(self) -> Ed25519PrivateKey:
        if self.private_key is None or self.key_id is None:
            raise KeyError(f"{self.username} has no enrolled signing key (run with --bootstrap)")
        return Ed25519PrivateKey.from_private_bytes(esign.b64url_decode(self.private_key))


@dataclass
class AccountsFile:
    path: Path
    accounts: dict[str, Account] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: Path) -> AccountsFile:
        if not path.exists():
            return cls(path)
        doc = orjson.loads(path.read_bytes())
        if doc.get("version") != FILE_VERSION:
            raise ValueError(f"{path}: credentials file version {doc.get('version')!r}, expected {FILE_VERSION}")
        return cls(path, {u: Account(**a) for u, a in doc.get("accounts", {}).items()})

    def save(self) -> None:
        """Write atomically, mode 0600 from the first byte (the file holds passwords and private keys)."""
        with self._lock:
            doc: dict[str, Any] = {
                "version": FILE_VERSION,
                "note": "liftwatch simulate technicians: passwords and Ed25519 private keys of simulated "
                        "accounts. Keep private; delete it together with the database it belongs to.",
                "accounts": {u: vars(a) for u, a in sorted(self.accounts.items())},
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            finally:
                os.close(fd)
            os.replace(tmp, self.path)

    def get(self, username: str) -> Account | None:
        return self.accounts.get(username)


@dataclass
class BootstrapReport:
    registered_units: int = 0
    accounts_created: list[str] = field(default_factory=list)
    accounts_existing: int = 0
    keys_enrolled: int = 0
    schedule: str | None = None  # the schedule command's output line, when it ran
    problems: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per phase

    def lines(self) -> list[str]:
        out = [f"bootstrap: {len(self.accounts_created)} accounts created, {self.accounts_existing} already there, "
               f"{self.keys_enrolled} signing keys enrolled"
               + (f", {self.registered_units} units registered" if self.registered_units else "")
               + " (" + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()) + ")"]
        if self.schedule:
            out.append(f"bootstrap: maintenance schedule: {self.schedule}")
        out += [f"bootstrap problem: {p}" for p in self.problems]
        return out


def liftwatch_cli(args: list[str], *, dsn: str, stdin: str | None = None, timeout: float = 120.0
                  ) -> subprocess.CompletedProcess[str]:
    """Run `python -m liftwatch ARGS` against the database `dsn` (the password, if any, on stdin)."""
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": dsn}
    return subprocess.run([sys.executable, "-m", "liftwatch", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def run_schedule(dsn: str) -> str:
    """`liftwatch maintenance schedule`; its output line. RuntimeError with its message on failure."""
    r = liftwatch_cli(["maintenance", "schedule"], dsn=dsn)
    if r.returncode != 0:
        raise RuntimeError((r.stderr or r.stdout).strip().splitlines()[-1] if (r.stderr or r.stdout).strip()
                           else f"exit code {r.returncode}")
    return r.stdout.strip()


def bootstrap(*, dsn: str, api_url: str, accounts: AccountsFile, unit_ids: Iterable[str],
              register: Callable[[Any], int] | None = None, log: Callable[[str], None] = lambda s: None,
              parallel: int = 4) -> BootstrapReport:
    """Make sure every company of `unit_ids` has its simulated account with an enrolled key.

    `register(conn)`, when given, registers the fleet first and returns how many units it added.
    Then: accounts missing from the credentials file are added to it (and the file saved)
    before their logins are created with `liftwatch users add`; every account without an
    active enrolled key gets a new one; and `liftwatch maintenance schedule` runs when none of
    these units has an open work order.
    """
    from liftwatch import db as dbmod

    report = BootstrapReport()
    ids = sorted(set(unit_ids))
    t = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal t
        now = time.monotonic()
        report.seconds[phase] = now - t
        t = now

    with dbmod.connect(dsn, autocommit=True) as conn:
        if register is not None:
            report.registered_units = register(conn)
        pairs = conn.execute("SELECT DISTINCT maintenance_company_id, user_unit_id FROM units WHERE unit_id = ANY(%s)",
                             (ids,)).fetchall()
        if not pairs:
            raise ValueError("none of the plan's units is registered: run `liftwatch simulate fleet` (or import "
                             "the units) first")
        wanted: list[Account] = []
        for mc in sorted({p[0] for p in pairs if p[0]}):
            wanted.append(Account(technician_username(mc), "", "technician", mc, person_name(mc, "technician"),
                                  certificate_no=f"T{seeds.derive(0, 'certificate', mc) % 10**10:010d}"))
        for uu in sorted({p[1] for p in pairs if p[1]}):
            wanted.append(Account(manager_username(uu), "", "user_unit", uu, person_name(uu, "user_unit")))
        names = [a.username for a in wanted]
        in_db = {r[0] for r in conn.execute("SELECT username FROM users WHERE username = ANY(%s)", (names,))}
    lap("registry")

    # 1. passwords are in the file before any login exists
    for a in wanted:
        known = accounts.get(a.username)
        if known is None:
            a.password = secrets.token_urlsafe(18)
            a.created = a.username in in_db  # taken by someone else: reported below
            accounts.accounts[a.username] = a
    accounts.save()

    # 2. logins: created through the command line, a few at a time
    to_create = []
    for name in names:
        a = accounts.accounts[name]
        if name in in_db:
            report.accounts_existing += 1
            a.created = True
        else:
            to_create.append(a)

    def create(a: Account) -> str | None:
        args = ["users", "add", "--username", a.username, "--name", a.name, "--role", a.role,
                "--company", a.company_id, "--password-stdin"]
        if a.certificate_no:
            args += ["--certificate", a.certificate_no]
        r = liftwatch_cli(args, dsn=dsn, stdin=a.password + "\n")
        if r.returncode != 0:
            return f"{a.username}: `liftwatch users add` failed: {(r.stderr or r.stdout).strip()[-300:]}"
        a.created = True
        log(f"account {a.username} ({a.role}, {a.company_id}) created")
        return None

    if to_create:
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            for problem in pool.map(create, to_create):
                if problem:
                    report.problems.append(problem)
        report.accounts_created = [a.username for a in to_create if a.created]
        accounts.save()
    lap("users add")

    # 3. keys, through the API (the password again, as the API asks)
    client = ApiClient(api_url)
    try:
        for name in names:
            a = accounts.accounts[name]
            if not a.created:
                continue
            try:
                if _ensure_key(Session(client, a.username, a.password), a):
                    report.keys_enrolled += 1
                    accounts.save()
            except ApiCallError as exc:
                hint = (" (the login exists but its password is not the one in the credentials file: "
                        "use another --prefix or database)") if exc.code == "invalid_credentials" else ""
                report.problems.append(f"{a.username}: {exc}{hint}")
    finally:
        client.close()
    lap("keys")

    # 4. work orders to find
    with dbmod.connect(dsn, autocommit=True) as conn:
        open_orders = conn.execute("SELECT count(*) FROM work_orders WHERE status = 'open' AND unit_id = ANY(%s)",
                                   (ids,)).fetchone()[0]
    if open_orders == 0:
        try:
            report.schedule = run_schedule(dsn)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            report.problems.append(f"maintenance schedule failed: {exc}")
        lap("schedule")
    return report


def _ensure_key(session: Session, a: Account) -> bool:
    """Enrol a new key unless the account's key is enrolled and active. True when one was enrolled."""
    if a.key_id is not None and a.private_key is not None:
        mine = {k["key_id"]: k for k in session.get("/api/v1/keys")}
        k = mine.get(a.key_id)
        pub = esign.b64url(esign.raw_public_key(a.key().public_key()))
        if k is not None and k["status"] == "active" and k["public_key"] == pub:
            return False
    key = Ed25519PrivateKey.generate()
    pub = esign.b64url(esign.raw_public_key(key.public_key()))
    doc = session.post("/api/v1/keys", {"public_key": pub, "label": KEY_LABEL, "password": a.password})
    a.key_id = doc["key_id"]
    a.private_key = esign.b64url(key.private_bytes_raw())
    return True
