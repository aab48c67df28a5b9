"""Passwords (argon2id), access tokens (short-lived HS256 JWTs) and user bootstrap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from liftwatch.errors import LiftwatchError
from liftwatch.settings import Settings
from maintenance import audit
from maintenance.deps import ROLES, ConnDep, CurrentUser, SettingsDep
from maintenance.errors import ApiError
from maintenance.throttle import LoginThrottle

_hasher = PasswordHasher()
# A real hash of a random password: verifying against it when the user does not exist keeps
# the response time the same, so a login cannot tell which usernames exist.
_DUMMY_HASH = _hasher.hash("liftwatch-no-such-user")

router = APIRouter(prefix="/api/v1", tags=["auth"])


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_user_password(conn: psycopg.Connection, user_id: int, password: str) -> bool:
    """The second signature component: the signer's password, checked again at signing time."""
    row = conn.execute("SELECT password_hash FROM users WHERE user_id = %s AND active", (user_id,)).fetchone()
    if row is None:
        return False
    return check_password(row["password_hash"], password)


def issue_token(settings: Settings, user_id: int, role: str, *, minutes: int | None = None) -> str:
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=minutes or settings.access_token_minutes)
    claims = {"sub": str(user_id), "role": role, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class Me(BaseModel):
    user_id: int
    person_id: int
    username: str
    name: str
    role: str
    company_id: str | None


def login_throttle(request: Request) -> LoginThrottle:
    """The app's login counters (made in create_app; one per app, so each test app starts clean)."""
    return request.app.state.login_throttle


@router.post("/auth/token", response_model=Token, summary="Log in (OAuth2 password flow)",
             responses={401: {"description": "wrong username or password"},
                        429: {"description": "too many failed logins for this username or from this address; "
                                             "see Retry-After"}})
def login(form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, conn: ConnDep,
          settings: SettingsDep, throttle: Annotated[LoginThrottle, Depends(login_throttle)]) -> Token:
    row = authenticate(conn, request, throttle, form.username, form.password)
    return Token(access_token=issue_token(settings, row["user_id"], row["role"]),
                 expires_in=settings.access_token_minutes * 60)


def authenticate(conn: psycopg.Connection, request: Request, throttle: LoginThrottle, username: str,
                 password: str) -> dict:
    """Check a username and password under the login throttle, auditing every outcome; the
    user's row ({user_id, role}) or ApiError 401/429. Shared by the API and the login page."""
    ip = request.client.host if request.client else "unknown"
    wait = throttle.attempt(username, ip)
    if wait:
        audit.record(conn, request, username, "login_throttled", detail={"retry_after_s": wait})
        raise ApiError(429, "throttled", f"too many failed logins; try again in {wait} s",
                       headers={"Retry-After": str(wait)})
    row = conn.execute(
        """SELECT us.user_id, us.password_hash, p.role FROM users us JOIN people p USING (person_id)
            WHERE us.username = %s AND us.active AND p.active""",
        (username,),
    ).fetchone()
    ok = check_password(row["password_hash"] if row else _DUMMY_HASH, password)
    if not row or not ok:
        audit.record(conn, request, username, "login_failed",
                     detail={"reason": "wrong_password" if row else "unknown_user"})
        raise ApiError(401, "invalid_credentials", "wrong username or password", headers={"WWW-Authenticate": "Bearer"})
    throttle.succeeded(username, ip)
    audit.record(conn, request, username, "login_ok", detail={"user_id": row["user_id"]})
    return {"user_id": row["user_id"], "role": row["role"]}


@router.get("/me", response_model=Me, summary="Who am I")
def me(user: CurrentUser) -> Me:
    return Me(user_id=user.user_id, person_id=user.person_id, username=user.username, name=user.name,
              role=user.role, company_id=user.company_id)


def add_user(conn: psycopg.Connection, *, username: str, name: str, role: str, company_id: str | None,
             password: str, certificate_no: str | None = None) -> tuple[int, int]:
    """Create a person and their login; return (user_id, person_id). `conn` uses dict rows."""
    if role not in ROLES:
        raise LiftwatchError(f"role must be one of {', '.join(ROLES)}")
    if role not in ("admin", "supervisor") and not company_id:
        raise LiftwatchError(f"a {role} belongs to a company: pass --company")
    if len(password) < 10:
        raise LiftwatchError("password must have at least 10 characters")
    with conn.transaction():
        if company_id:
            kind = conn.execute("SELECT kind FROM companies WHERE company_id = %s", (company_id,)).fetchone()
            if kind is None:
                raise LiftwatchError(f"company {company_id!r} does not exist (import units first)")
            k = kind["kind"]
            expected = "user_unit" if role == "user_unit" else "maintenance"
            if role in ("technician", "company_manager", "user_unit") and k != expected:
                raise LiftwatchError(f"a {role} must belong to a {expected} company; {company_id} is {k}")
        try:
            person = conn.execute(
                "INSERT INTO people (name, role, company_id, certificate_no) VALUES (%s, %s, %s, %s) RETURNING person_id",
                (name, role, company_id, certificate_no),
            ).fetchone()
            person_id = person["person_id"]
            user = conn.execute(
                "INSERT INTO users (username, person_id, password_hash) VALUES (%s, %s, %s) RETURNING user_id",
                (username, person_id, hash_password(password)),
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise LiftwatchError(f"username {username!r} is taken") from None
        except psycopg.errors.CheckViolation as exc:
            raise LiftwatchError(f"rejected: {exc.diag.message_primary}") from None
    return user["user_id"], person_id
