"""Paging of list endpoints: `limit`/`offset` query parameters, the total in `X-Total-Count`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import Depends, Query, Response


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int


def page(limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000)) -> Page:
    return Page(limit, offset)


PageDep = Annotated[Page, Depends(page)]


def fetch_page(conn: psycopg.Connection, response: Response, *, select: str, from_where: str,
               params: tuple | list, order_by: str, pg: Page) -> list[dict]:
    """Run one list query (clauses are code constants; values are parameters) and set X-Total-Count."""
    total = conn.execute(f"SELECT count(*) AS n {from_where}", params).fetchone()["n"]  # noqa: S608
    response.headers["X-Total-Count"] = str(total)
    if pg.offset >= total:
        return []
    return conn.execute(f"SELECT {select} {from_where} ORDER BY {order_by} LIMIT %s OFFSET %s",  # noqa: S608
                        (*params, pg.limit, pg.offset)).fetchall()
