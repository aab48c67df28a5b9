"""GET /api/v1/audit: the audit log for the admin, newest first, filtered and paged."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel

from maintenance.audit import clean_text
from maintenance.deps import ConnDep, User, require
from maintenance.paging import PageDep, fetch_page

router = APIRouter(prefix="/api/v1", tags=["audit"])


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    object: str | None
    detail: dict[str, Any]
    client_ip: str | None


@router.get("/audit", response_model=list[AuditEntry], summary="The audit log, newest first (admin)")
def list_audit(conn: ConnDep, response: Response, pg: PageDep,
               user: Annotated[User, Depends(require("admin"))],
               action: Annotated[str | None, Query(max_length=64)] = None,
               actor: Annotated[str | None, Query(max_length=200)] = None,
               since: Annotated[AwareDatetime | None, Query(description="only entries at or after this time")] = None,
               ) -> list[dict]:
    where, args = ["TRUE"], []
    for cond, val in (("action = %s", action), ("actor = %s", actor), ("at >= %s", since)):
        if val is not None:
            where.append(cond)
            args.append(clean_text(val, 200) if isinstance(val, str) else val)
    return fetch_page(conn, response, select="id, at, actor, action, object, detail, host(client_ip) AS client_ip",
                      from_where=f"FROM audit_log WHERE {' AND '.join(where)}", params=args,
                      order_by="at DESC, id DESC", pg=pg)
