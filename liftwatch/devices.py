"""Device identity on the broker: one login per unit, confined by the ACL to its own topics.

One rule set (`SERVICE_ACCOUNTS`, `DEVICE_GRANTS`), two brokers:
* Mosquitto keeps salted password hashes in its password file, which this module maintains
  with `mosquitto_passwd`, and reads the ACL file `acl_text()` renders. After a change the
  broker must reload (SIGHUP).
* EMQX asks Liftwatch over HTTP (`liftwatch broker-hook`, liftwatch/devicehook.py): the login
  is checked against `device_credentials.secret_hash`, and the answer carries the account's
  rules (`emqx_acl`), which EMQX then enforces itself; `may()` answers single questions.
A unit's username is its unit id; it may publish only under lift/<its id>/ and read nothing.
Service accounts (the ingestor, the fleet simulator, the alert dispatcher) get explicit grants.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg

from liftwatch.contract import UNIT_ID_RE
from liftwatch.errors import ConfigurationError, LiftwatchError

MIN_SECRET_LEN = 32  # a chosen secret (--password-stdin) must be as unguessable as a generated one


@dataclass(frozen=True, slots=True)
class Grant:
    """One thing an account may do. `access` in Mosquitto's words: read = subscribe (and receive),
    write = publish. `topic` is a topic filter; %u stands for the login's username."""

    access: Literal["read", "write"]
    topic: str


#: What each service account may do; every other login is a unit and gets DEVICE_GRANTS.
SERVICE_ACCOUNTS: dict[str, tuple[Grant, ...]] = {
    "ingest": (Grant("read", "lift/#"), Grant("write", "alerts/#"),
               Grant("read", "$SYS/broker/uptime"),  # the Mosquitto container's health check
               # `ingest --group` identifies the broker first (ingest/brokercheck.py): Mosquitto, EMQX
               Grant("read", "$SYS/broker/version"), Grant("read", "$SYS/brokers"),
               Grant("read", "$SYS/brokers/+/version")),
    "simulator": (Grant("write", "lift/#"), Grant("write", "liftwatch/sim/#")),  # + its connection's last will
    "dispatcher": (Grant("read", "alerts/#"),),
}
DEVICE_GRANTS: tuple[Grant, ...] = (Grant("write", "lift/%u/#"),)


def grants_of(username: str) -> tuple[Grant, ...]:
    """The account's grants with %u filled in; none for a name that is neither a service nor a unit id."""
    if username in SERVICE_ACCOUNTS:
        return SERVICE_ACCOUNTS[username]
    if UNIT_ID_RE.match(username):  # no '+', '#' or '/': it cannot widen a filter it is put into
        return tuple(Grant(g.access, g.topic.replace("%u", username)) for g in DEVICE_GRANTS)
    return ()


def acl_text() -> str:
    """Mosquitto's ACL file."""
    lines = ["# Written by `liftwatch devices`; edits are overwritten. Everything not granted is denied.", ""]
    for user, grants in SERVICE_ACCOUNTS.items():
        lines.append(f"user {user}")
        lines.extend(f"topic {g.access} {g.topic}" for g in grants)
        lines.append("")
    lines += ["# every other login is a unit: it may publish under lift/<its username>/ and read nothing",
              *(f"pattern {g.access} {g.topic}" for g in DEVICE_GRANTS), ""]
    return "\n".join(lines)


def _covers(grant: str, wanted: str) -> bool:
    """Does filter `grant` match every topic that `wanted` (a topic or a filter) can match?"""
    g, w = grant.split("/"), wanted.split("/")
    for i, level in enumerate(g):
        if level == "#":
            return True
        if i >= len(w) or w[i] == "#" or (level != "+" and (w[i] == "+" or w[i] != level)):
            return False
    return len(w) == len(g)


def _real_filter(topic: str) -> str | None:
    """A subscription's filter without the shared-subscription prefix; None if malformed."""
    if not topic.startswith("$share/"):
        return topic
    parts = topic.split("/", 2)
    if len(parts) < 3 or not parts[1] or any(c in parts[1] for c in "+#") or not parts[2]:
        return None
    return parts[2]


def may(username: str, action: Literal["publish", "subscribe"], topic: str) -> bool:
    """The broker's question for an authenticated login: may it publish to / subscribe to `topic`?"""
    if action == "publish":
        if not topic or "+" in topic or "#" in topic:
            return False
        wanted, need = topic, "write"
    elif action == "subscribe":
        real = _real_filter(topic)
        if not real:
            return False
        wanted, need = real, "read"
    else:
        return False
    return any(g.access == need and _covers(g.topic, wanted) for g in grants_of(username))


def emqx_acl(username: str) -> list[dict]:
    """The account's rules in EMQX's format (the `acl` of an HTTP authentication answer, EMQX >= 5.8),
    ending in explicit denials so nothing falls through to another authorizer."""
    rules = []
    for g in grants_of(username):
        rules.append({"permission": "allow", "action": "publish" if g.access == "write" else "subscribe",
                      "topic": g.topic})
        if g.access == "read" and not g.topic.startswith("$"):  # the same filter in a shared group, whether
            rules.append({"permission": "allow", "action": "subscribe",  # EMQX asks with the $share form or not
                          "topic": f"$share/+/{g.topic}"})
    return rules + [{"permission": "deny", "action": "all", "topic": "#"},
                    {"permission": "deny", "action": "all", "topic": "$SYS/#"}]


def hash_secret(secret: str) -> str:
    """Salted SHA-256. Enough for these secrets: generated ones carry 192 random bits and chosen
    ones must be as long, so no guessing helps, while a slow hash (argon2) would make a broker's
    reconnect storm (every device logging in again) cost CPU-hours."""
    salt = secrets.token_bytes(16)
    return f"sha256${salt.hex()}${hashlib.sha256(salt + secret.encode()).hexdigest()}"


def check_secret(stored: str | None, secret: str) -> bool:
    try:
        scheme, salt, digest = (stored or "").split("$")
        if scheme != "sha256":
            return False
        mine = hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()
    except ValueError:
        return False
    return hmac.compare_digest(mine, digest)


def _passwd_tool() -> str:
    tool = shutil.which("mosquitto_passwd")
    if not tool:
        raise ConfigurationError("mosquitto_passwd not found: install mosquitto (scripts/install-timescaledb.sh does)")
    return tool


def _set_password(passwd_file: Path, username: str, secret: str) -> None:
    passwd_file.parent.mkdir(parents=True, exist_ok=True)
    args = [_passwd_tool(), "-b", str(passwd_file), username, secret]
    if not passwd_file.exists():
        args.insert(1, "-c")
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise LiftwatchError(f"mosquitto_passwd failed: {(r.stderr or r.stdout).strip()}")
    os.chmod(passwd_file, 0o600)


def _write_acl(acl_file: Path) -> None:
    acl_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = acl_file.with_suffix(".tmp")
    tmp.write_text(acl_text())
    os.chmod(tmp, 0o600)
    tmp.replace(acl_file)


def _audit(conn: psycopg.Connection, action: str, obj: str) -> None:
    conn.execute("INSERT INTO audit_log (actor, action, object) VALUES (%s, %s, %s)",
                 (f"cli:{getpass.getuser()}", action, obj))


def provision(conn: psycopg.Connection, unit_or_service: str, *, passwd_file: Path | None, acl_file: Path | None,
              secret: str | None = None) -> str:
    """Create or rotate the login; return the new secret (shown once, never stored in clear).
    `secret`: a chosen one (e.g. the ingest password of a compose file); default generated.
    Without `passwd_file` (a broker that asks `liftwatch broker-hook`) no Mosquitto file is written."""
    name = unit_or_service
    if secret is not None and len(secret) < MIN_SECRET_LEN:
        raise LiftwatchError(f"a chosen secret must have at least {MIN_SECRET_LEN} characters (openssl rand -hex 24)")
    if name in SERVICE_ACCOUNTS:
        kind, unit_id = "service", None
    else:
        if not UNIT_ID_RE.match(name):
            raise LiftwatchError(f"{name!r} is not a valid unit id")
        if conn.execute("SELECT 1 FROM units WHERE unit_id = %s", (name,)).fetchone() is None:
            raise LiftwatchError(f"unit {name!r} is not in the registry; import it first")
        kind, unit_id = "device", name
    secret = secret or secrets.token_urlsafe(24)
    with conn.transaction():
        existed = conn.execute(
            """INSERT INTO device_credentials (username, unit_id, account_kind, secret_hash) VALUES (%s, %s, %s, %s)
               ON CONFLICT (username) DO UPDATE SET rotated_at = now(), revoked_at = NULL,
                                                    secret_hash = EXCLUDED.secret_hash
               RETURNING (xmax <> 0) AS existed""", (name, unit_id, kind, hash_secret(secret))).fetchone()[0]
        _audit(conn, "device_rotated" if existed else "device_provisioned", name)
        if passwd_file is not None:
            _set_password(passwd_file, name, secret)
        if acl_file is not None:
            _write_acl(acl_file)
    return secret


def revoke(conn: psycopg.Connection, username: str, *, passwd_file: Path | None) -> None:
    with conn.transaction():
        row = conn.execute("UPDATE device_credentials SET revoked_at = now() WHERE username = %s AND revoked_at IS NULL "
                           "RETURNING username", (username,)).fetchone()
        if row is None:
            raise LiftwatchError(f"{username!r} has no active broker login")
        _audit(conn, "device_revoked", username)
        if passwd_file is not None and passwd_file.exists():
            r = subprocess.run([_passwd_tool(), "-D", str(passwd_file), username], capture_output=True, text=True)
            if r.returncode != 0:
                raise LiftwatchError(f"mosquitto_passwd -D failed: {(r.stderr or r.stdout).strip()}")


def reload_broker(pid: int) -> None:
    """Ask Mosquitto to re-read its password and ACL files."""
    import signal

    os.kill(pid, signal.SIGHUP)
