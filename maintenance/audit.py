"""The audit log: logins and privileged actions, one append-only row each (a trigger refuses
UPDATE and DELETE). The admin reads it at GET /api/v1/audit (routes_audit.py).

Routes call `record()` inside the transaction of the action they audit where there is one,
so an action and its row commit together. Passwords are never recorded.

Actions: login_ok, login_failed, login_throttled, key_enrolled, key_revoked, work_order_created,
work_order_signed, schedule_run, hazard_reported, hazard_assigned, hazard_rectified,
hazard_closed, alert_acknowledged, {company,site,unit,person}_{created,updated}.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import psycopg
from fastapi import Request
from psycopg.types.json import Jsonb


def client_ip(request: Request) -> str | None:
    """The TCP peer address, or None when it is not an IP address (e.g. a test client)."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


def clean_text(value: str, limit: int) -> str:
    # PostgreSQL text holds neither NUL nor lone surrogates; an attempted username may have both
    return value.replace("\x00", "\N{REPLACEMENT CHARACTER}").encode("utf-8", "replace").decode()[:limit]


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value, 2000)
    if isinstance(value, dict):
        return {clean_text(str(k), 200): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, ensure_ascii=False)


def record(conn: psycopg.Connection, request: Request, actor: str, action: str, object: str | None = None,  # noqa: A002
           detail: dict[str, Any] | None = None) -> None:
    """Append one audit row; `actor` is a username (or the attempted one), 'anonymous' for the public."""
    conn.execute(
        "INSERT INTO audit_log (actor, action, object, detail, client_ip) VALUES (%s, %s, %s, %s, %s)",
        (clean_text(actor, 200), action, clean_text(object, 300) if object is not None else None,
         Jsonb(_clean(detail or {}), dumps=_dumps), client_ip(request)))
