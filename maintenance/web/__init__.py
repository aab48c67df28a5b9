"""The web pages served by `liftwatch api`: server-rendered HTML (Jinja2), small same-origin
scripts, no build step. See docs/web.md.

    /login /logout /                 pages_auth.py
    /dashboard /kpi/* /units/* /scorecards      pages_supervisor.py
    /tech /countersign /keys         pages_field.py   (phone-sized; signing with WebCrypto)
    /u/<unit> (+ QR, notice) /sites/<site>/notices   pages_public.py

Errors on pages are pages too (a readable message in the user's language); the JSON API
under /api/ keeps its JSON error bodies.
"""

from __future__ import annotations

import logging
from importlib import resources
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response

from maintenance.errors import ApiError
from maintenance.web import pages_auth, pages_field, pages_public, pages_supervisor
from maintenance.web.render import LoginRequired, render

log = logging.getLogger(__name__)
JSON_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json", "/healthz", "/static/")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(JSON_PREFIXES)


def _error_page(request: Request, status: int, message_key: str, detail: str = "") -> Response:
    return render(request, "error.html", status=status, message_key=message_key, detail=detail)


def install(app: FastAPI) -> None:
    static_dir = resources.files("maintenance.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
    app.include_router(pages_auth.router)
    app.include_router(pages_supervisor.router)
    app.include_router(pages_field.router)
    app.include_router(pages_public.router)

    json_api_error = app.exception_handlers[ApiError]
    json_http_error = app.exception_handlers[StarletteHTTPException]
    json_validation = app.exception_handlers[RequestValidationError]

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        if _wants_json(request):
            return await json_api_error(request, exc)
        key = {404: "error_404", 403: "error_csrf" if exc.code == "csrf" else "error_403"}.get(exc.status, "")
        return _error_page(request, exc.status, key, "" if key else exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_json(request):
            return await json_http_error(request, exc)
        return _error_page(request, exc.status_code, "error_404" if exc.status_code == 404 else "", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if _wants_json(request):
            return await json_validation(request, exc)
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_page(request, 422, "", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        if _wants_json(request):
            return JSONResponse({"error": "internal", "detail": "internal server error"}, status_code=500)
        return _error_page(request, 500, "error_500")
