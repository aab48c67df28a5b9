"""Device identity on the broker: one login per unit, confined by the ACL to its own topics.

The broker (Mosquitto) keeps salted password hashes in its password file, which this module
maintains with `mosquitto_passwd`, and reads the ACL file this module writes. A unit's
username is its unit id; the pattern `write lift/%u/#` lets it publish only under
lift/<its id>/ and grants it no reads at all. Service accounts (the ingestor, the fleet
simulator) get explicit lines. After a change the broker must reload (SIGHUP).
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import psycopg

from liftwatch.contract import UNIT_ID_RE
from liftwatch.errors import ConfigurationError, LiftwatchError

#: What each service account may do; devices get only the pattern line.
SERVICE_ACCOUNTS: dict[str, tuple[str, ...]] = {
    # $SYS/broker/version: `ingest --group` identifies the broker before joining a shared group
    "ingest": ("topic read lift/#", "topic write alerts/#", "topic read $SYS/broker/uptime",
               "topic read $SYS/broker/version"),
    "simulator": ("topic write lift/#", "topic write liftwatch/sim/#"),  # + its connection's last will
    "dispatcher": ("topic read alerts/#",),
}
DEVICE_PATTERN = "pattern write lift/%u/#"


def acl_text() -> str:
    lines = ["# Written by `liftwatch devices`; edits are overwritten. Everything not granted is denied.", ""]
    for user, grants in SERVICE_ACCOUNTS.items():
        lines.append(f"user {user}")
        lines.extend(grants)
        lines.append("")
    lines += ["# every other login is a unit: it may publish under lift/<its username>/ and read nothing",
              DEVICE_PATTERN, ""]
    return "\n".join(lines)


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


def provision(conn: psycopg.Connection, unit_or_service: str, *, passwd_file: Path, acl_file: Path) -> str:
    """Create or rotate the login; return the new secret (shown once, never stored in clear)."""
    name = unit_or_service
    if name in SERVICE_ACCOUNTS:
        kind, unit_id = "service", None
    else:
        if not UNIT_ID_RE.match(name):
            raise LiftwatchError(f"{name!r} is not a valid unit id")
        if conn.execute("SELECT 1 FROM units WHERE unit_id = %s", (name,)).fetchone() is None:
            raise LiftwatchError(f"unit {name!r} is not in the registry; import it first")
        kind, unit_id = "device", name
    secret = secrets.token_urlsafe(24)
    with conn.transaction():
        existed = conn.execute(
            """INSERT INTO device_credentials (username, unit_id, account_kind) VALUES (%s, %s, %s)
               ON CONFLICT (username) DO UPDATE SET rotated_at = now(), revoked_at = NULL
               RETURNING (xmax <> 0) AS existed""", (name, unit_id, kind)).fetchone()[0]
        _audit(conn, "device_rotated" if existed else "device_provisioned", name)
        _set_password(passwd_file, name, secret)
        _write_acl(acl_file)
    return secret


def revoke(conn: psycopg.Connection, username: str, *, passwd_file: Path) -> None:
    with conn.transaction():
        row = conn.execute("UPDATE device_credentials SET revoked_at = now() WHERE username = %s AND revoked_at IS NULL "
                           "RETURNING username", (username,)).fetchone()
        if row is None:
            raise LiftwatchError(f"{username!r} has no active broker login")
        _audit(conn, "device_revoked", username)
        if passwd_file.exists():
            r = subprocess.run([_passwd_tool(), "-D", str(passwd_file), username], capture_output=True, text=True)
            if r.returncode != 0:
                raise LiftwatchError(f"mosquitto_passwd -D failed: {(r.stderr or r.stdout).strip()}")


def reload_broker(pid: int) -> None:
    """Ask Mosquitto to re-read its password and ACL files."""
    import signal

    os.kill(pid, signal.SIGHUP)
