"""Request dependencies: the connection pool, the current user and the scope rules.

Scope is decided in one place (`Scope`): every query that lists or fetches units, work
orders or hazards joins through `units` and applies `Scope.unit_filter()`, so an object
outside a user's scope is indistinguishable from one that does not exist (404).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

import jwt
import psycopg
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from liftwatch.settings import Settings
from maintenance.errors import ApiError
from maintenance.websession import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, csrf_ok

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)

ROLES = ("admin", "supervisor", "company_manager", "technician", "user_unit")


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_conn(request: Request) -> AsyncIterator[psycopg.Connection]:
    """A pooled connection in autocommit mode with dict rows; use `conn.transaction()` to group.

    Requests queue on an asyncio semaphore the size of the pool *before* taking a connection.
    Waiting for the pool inside a worker thread (a sync dependency) would let requests that
    wait for connections occupy every thread, while requests that hold connections need a
    thread to finish: the API stalled for the pool timeout under 50 clients (fastapi#3205).
    """
    pool: ConnectionPool = request.app.state.pool
    sem = getattr(request.app.state, "conn_sem", None)
    if sem is None:
        sem = request.app.state.conn_sem = asyncio.Semaphore(pool.max_size)
    async with sem:
        conn = await run_in_threadpool(pool.getconn)
        try:
            conn.row_factory = dict_row
            yield conn
        finally:
            await run_in_threadpool(pool.putconn, conn)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ConnDep = Annotated[psycopg.Connection, Depends(get_conn)]


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    person_id: int
    username: str
    name: str
    role: str
    company_id: str | None

    @property
    def scope(self) -> Scope:
        return Scope(self.role, self.company_id)


@dataclass(frozen=True, slots=True)
class Scope:
    role: str
    company_id: str | None

    def unit_filter(self, alias: str = "u") -> tuple[str, tuple]:
        """A SQL condition on the units table (aliased) restricting rows to this scope."""
        if self.role in ("admin", "supervisor"):
            return "TRUE", ()
        if self.role in ("company_manager", "technician"):
            return f"{alias}.maintenance_company_id = %s", (self.company_id,)
        if self.role == "user_unit":
            return f"{alias}.user_unit_id = %s", (self.company_id,)
        return "FALSE", ()


def _load_user(conn: psycopg.Connection, user_id: int) -> User | None:
    row = conn.execute(
        """SELECT us.user_id, us.person_id, us.username, p.name, p.role, p.company_id
             FROM users us JOIN people p USING (person_id)
            WHERE us.user_id = %s AND us.active AND p.active""",
        (user_id,),
    ).fetchone()
    return User(**row) if row else None


def user_from_token(conn: psycopg.Connection, settings: Settings, token: str) -> User | None:
    """The active user a signed, unexpired access token names, or None."""
    try:
        claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"],
                            options={"require": ["exp", "sub", "iat"]})
        user_id = int(claims["sub"])
    except (jwt.PyJWTError, ValueError):
        return None
    return _load_user(conn, user_id)


def current_user(request: Request, conn: ConnDep, settings: SettingsDep,
                 token: Annotated[str | None, Depends(oauth2_scheme)]) -> User:
    """The caller, from a Bearer token or else the web pages' session cookie (then a request that
    changes something must also carry the session's CSRF token, see websession.py)."""
    unauthorized = ApiError(401, "not_authenticated", "log in first (POST /api/v1/auth/token)",
                            headers={"WWW-Authenticate": "Bearer"})
    cookie = None if token else request.cookies.get(SESSION_COOKIE)
    token = token or cookie
    if not token:
        raise unauthorized
    user = user_from_token(conn, settings, token)
    if user is None:
        raise unauthorized
    if cookie and request.method not in SAFE_METHODS and not csrf_ok(
            settings.jwt_secret, cookie, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "csrf", f"a request with the session cookie needs the {CSRF_HEADER} header "
                                    "of the page it came from; reload the page")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require(*roles: str, who: Callable[..., User] = current_user):
    """A dependency admitting only the given roles (403 otherwise); `who` finds the user (the
    API's current_user, or the pages' cookie-only page_user)."""

    def check(user: User = Depends(who)) -> User:  # noqa: B008 - a dependency chosen at run time
        if user.role not in roles:
            raise ApiError(403, "forbidden", f"this needs one of the roles: {', '.join(roles)}")
        return user

    return check
