"""The web pages' login: the same signed access token as the API, in an HttpOnly cookie.

    lw_session     HttpOnly, SameSite=Strict, Secure over https; Path=/ so that the pages'
                   scripts can call /api/v1 with it (no token is ever visible to JavaScript)
    X-CSRF-Token   a request authenticated by that cookie that changes something (any method
                   but GET/HEAD/OPTIONS) must carry HMAC(jwt_secret, session token) in this
                   header, or in the form field `csrf` of a page's form post; the pages put it
                   in <meta name="csrf-token">. SameSite=Strict already keeps the cookie off
                   cross-site requests; the token is the second, independent fence.
    lw_login_csrf  a random value set with the login form and posted back with it (double
                   submit), so another site cannot log a browser into someone else's account.

A Bearer token (the API's own clients) needs no CSRF token: nothing sends it by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "lw_session"
LOGIN_CSRF_COOKIE = "lw_login_csrf"
LANG_COOKIE = "lw_lang"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(secret: str, session_token: str) -> str:
    """The CSRF token bound to one session (stateless: nothing to store or expire separately)."""
    mac = hmac.new(secret.encode(), b"csrf:" + session_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_ok(secret: str, session_token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret, session_token), presented)


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, token: str, max_age_s: int) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age_s, path="/", httponly=True,
                        samesite="strict", secure=is_https(request))


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request))
