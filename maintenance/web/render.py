"""Jinja2 rendering with the language, the login and the formatting every page shares."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Depends, Request
from starlette.responses import HTMLResponse

from liftwatch import __version__
from liftwatch.settings import Settings
from maintenance.deps import ConnDep, SettingsDep, User, require, user_from_token
from maintenance.errors import ApiError
from maintenance.web.i18n import HTML_LANG, LANGS, MESSAGES, pick_lang, translator
from maintenance.websession import CSRF_FIELD, LANG_COOKIE, SESSION_COOKIE, csrf_ok, csrf_token

STAFF_ROLES = ("admin", "supervisor", "company_manager")  # who sees the dashboard
LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600
# the texts the pages' scripts need (handed over as JSON in the page, in its language)
JS_TEXT_PREFIXES = ("kind_", "sev_", "result_", "error_", "sign_", "keys_", "wo_status_", "key_", "meaning_",
                    "role_", "live_", "apierr_")
JS_TEXTS = ("acknowledged_by", "ack_failed", "alerts_updated", "alerts_none", "alerts_shown", "acknowledge",
            "acknowledge_alert", "saved",
            "checklist_progress", "loading", "revoke", "checkin_done")


class LoginRequired(Exception):
    """A page needs a login; the handler redirects to /login?next=<the page>."""


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("maintenance.web", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env


def lang_of(request: Request) -> str:
    return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def _lang_url(request: Request, lang: str) -> str:
    q = [(k, v) for k, v in request.query_params.multi_items() if k not in ("lang", "reported")]
    return request.url.path + "?" + urlencode([*q, ("lang", lang)])


@lru_cache(maxsize=len(LANGS))
def _js_texts(lang: str) -> dict[str, str]:
    t = translator(lang)
    return {k: t(k) for k in MESSAGES if k.startswith(JS_TEXT_PREFIXES) or k in JS_TEXTS}


def formatters(settings: Settings) -> dict[str, Any]:
    tz = ZoneInfo(settings.display_tz)

    def dt(value: datetime | str | None) -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M")

    def d(value: date | datetime | None) -> str:
        if value is None:
            return "—"
        if isinstance(value, datetime):
            value = value.astimezone(tz).date()
        return value.isoformat()

    return {"dt": dt, "d": d, "display_tz": settings.display_tz}


def render(request: Request, template: str, *, user: User | None = None, status: int = 200,
           **ctx: Any) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    lang = lang_of(request)
    session = request.cookies.get(SESSION_COOKIE) if user else None
    page = {
        "request": request, "user": user, "lang": lang, "html_lang": HTML_LANG[lang], "t": translator(lang),
        "has_text": lambda key: key in MESSAGES, "both": lambda key: MESSAGES[key],
        "csrf": csrf_token(settings.jwt_secret, session) if session else "",
        "csrf_field": CSRF_FIELD, "version": __version__, "staff_roles": STAFF_ROLES,
        "lang_links": [(lg, _lang_url(request, lg)) for lg in LANGS], "js_texts": _js_texts(lang),
        **formatters(settings), **ctx,
    }
    html = environment().get_template(template).render(page)
    response = HTMLResponse(html, status_code=status)
    # a page with someone's data is not kept by the browser or a proxy; a public page is revalidated
    response.headers["Cache-Control"] = "no-store" if user else "no-cache"
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=LANG_COOKIE_MAX_AGE_S, path="/", samesite="lax")
    return response


# --- who is looking ------------------------------------------------------------------------------

def optional_page_user(request: Request, conn: ConnDep, settings: SettingsDep) -> User | None:
    """The logged-in user of a page (session cookie only: pages are never opened with a Bearer token)."""
    token = request.cookies.get(SESSION_COOKIE)
    return user_from_token(conn, settings, token) if token else None


def page_user(user: Annotated[User | None, Depends(optional_page_user)]) -> User:
    if user is None:
        raise LoginRequired
    return user


PageUser = Annotated[User, Depends(page_user)]


def page_roles(*roles: str):
    """A page dependency admitting the given roles; others get the 403 page."""
    return require(*roles, who=page_user)


def check_form_csrf(request: Request, form: dict[str, Any]) -> None:
    """A page's own form post (no JavaScript): the session's CSRF token must come with it."""
    settings: Settings = request.app.state.settings
    session = request.cookies.get(SESSION_COOKIE) or ""
    if not csrf_ok(settings.jwt_secret, session, form.get(CSRF_FIELD)):
        raise ApiError(403, "csrf", "this form has expired; reload the page and try again")


def public_base(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return settings.public_base_url or str(request.base_url).rstrip("/")
