"""The evaluation's visits of the past: maintenance/replay.py with eval accounts and the
simulator's readings.

Everything a visit does goes through the functions the API routes call (see
maintenance/replay.py). The one shortcut: eval accounts get a cheap argon2 hash, because two
password checks per visit at production cost would take longer than everything else in the
run (the password is still checked).
"""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liftwatch import esign
from liftwatch.cli_replay import past_visit, simulated_entry
from maintenance.auth import add_user
from maintenance.deps import User
from maintenance.replay import PastVisitRecorder, Signer
from simulators.visits import Visit

_CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # eval accounts only (see above)


class Recorder(PastVisitRecorder):
    """The replay with eval accounts, created on first use (one technician per maintenance
    company, one safety manager per user unit)."""

    def __init__(self, conn: psycopg.Connection, *, seed: int, visits: list[Visit], units: dict[str, Any]) -> None:
        self.signers: dict[str, Signer] = {}
        super().__init__(conn, [past_visit(v, units[v.unit_id]) for v in visits], signer=self._signer,
                         entry=simulated_entry(seed))

    def _signer(self, role: str, company_id: str) -> Signer:
        username = f"eval-{'tech' if role == 'technician' else 'uu'}-{company_id}"
        s = self.signers.get(username)
        if s is not None:
            return s
        password = secrets.token_urlsafe(16)
        name = f"{'Technician' if role == 'technician' else 'Safety manager'} {company_id}"
        user_id, person_id = add_user(self.conn, username=username, name=name, role=role, company_id=company_id,
                                      password=password, certificate_no=f"T-{company_id}" if role == "technician" else None)
        self.conn.execute("UPDATE users SET password_hash = %s WHERE user_id = %s", (_CHEAP.hash(password), user_id))
        key = Ed25519PrivateKey.generate()
        key_id = self.conn.execute(
            "INSERT INTO signing_keys (person_id, public_key, label) VALUES (%s, %s, 'eval') RETURNING key_id",
            (person_id, esign.raw_public_key(key.public_key()))).fetchone()["key_id"]
        s = Signer(User(user_id, person_id, username, name, role, company_id), key, key_id, password)
        self.signers[username] = s
        return s
