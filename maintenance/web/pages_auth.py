"""Login and logout for the pages: the API's own password check and throttle, a cookie session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from maintenance.auth import authenticate, issue_token, login_throttle
from maintenance.deps import ConnDep, SettingsDep, User
from maintenance.errors import ApiError
from maintenance.throttle import LoginThrottle
from maintenance.web.render import STAFF_ROLES, check_form_csrf, optional_page_user, render
from maintenance.websession import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    clear_session,
    is_https,
    new_login_nonce,
    set_session,
)

router = APIRouter(include_in_schema=False)
LOGIN_NONCE_MAX_AGE_S = 3600  # the login form stays usable for an hour


def home_for(role: str) -> str:
    if role in STAFF_ROLES:
        return "/dashboard"
    return "/tech" if role == "technician" else "/countersign"


def safe_next(value: str | None) -> str | None:
    """Only a path on this site (no //host, no scheme) may be a redirect target."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return None


@router.get("/")
def home(user: Annotated[User | None, Depends(optional_page_user)]) -> Response:
    return RedirectResponse(home_for(user.role) if user else "/login", status_code=303)


def _login_page(request: Request, *, error: str = "", username: str = "", next_: str = "",
                status: int = 200, field_errors: dict[str, str] | None = None) -> Response:
    nonce = new_login_nonce()
    response = render(request, "login.html", status=status, nonce=nonce, error=error, username=username,
                      next=next_, field_errors=field_errors or {})
    response.set_cookie(LOGIN_CSRF_COOKIE, nonce, max_age=LOGIN_NONCE_MAX_AGE_S, path="/login", httponly=True,
                        samesite="strict", secure=is_https(request))
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query name
    return _login_page(request, next_=safe_next(next) or "")


@router.post("/login")
async def login_submit(request: Request, conn: ConnDep, settings: SettingsDep,
                       throttle: Annotated[LoginThrottle, Depends(login_throttle)]) -> Response:
    form = await request.form()
    username = str(form.get("username") or "").strip()
    password = str(form.get("password") or "")
    next_ = safe_next(str(form.get("next") or "")) or ""
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not nonce or form.get("nonce") != nonce:
        return _login_page(request, error="login_expired_form", username=username, next_=next_, status=400)
    missing = {f: "field_required" for f, v in (("username", username), ("password", password)) if not v}
    if missing:
        return _login_page(request, username=username, next_=next_, status=422, field_errors=missing)
    try:
        row = authenticate(conn, request, throttle, username[:200], password[:200])
    except ApiError as exc:
        if exc.status == 429:
            wait = (exc.headers or {}).get("Retry-After", "60")
            return _login_page(request, error=f"login_throttled:{wait}", username=username, next_=next_, status=429)
        return _login_page(request, error="login_failed", username=username, next_=next_, status=401)
    token = issue_token(settings, row["user_id"], row["role"], minutes=settings.web_session_minutes)
    response = RedirectResponse(next_ or home_for(row["role"]), status_code=303)
    set_session(response, request, token, settings.web_session_minutes * 60)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if request.cookies.get(SESSION_COOKIE):
        check_form_csrf(request, dict(await request.form()))
    response = RedirectResponse("/login", status_code=303)
    clear_session(response, request)
    return response
