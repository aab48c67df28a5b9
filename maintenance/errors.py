"""API errors: every client mistake is a 4xx JSON body {"error": code, "detail": text, "field"?}.

    ApiError(status, code, detail, field=None)   raised by route code
    RequestValidationError (FastAPI)             -> 422 with the first offending field named
    psycopg IntegrityError from a trigger        -> 409 "immutable"
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def _body(code: str, detail: str, field: str | None = None) -> dict:
    out = {"error": code, "detail": detail}
    if field:
        out["field"] = field
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_body(exc.code, exc.detail, exc.field), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        return JSONResponse(
            {**_body("invalid_request", first.get("msg", "invalid request"), field),
             "errors": [{"field": ".".join(str(p) for p in e.get("loc", ())), "msg": e.get("msg")} for e in errors[:20]]},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body("http_error", str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(psycopg.errors.IntegrityConstraintViolation)
    async def _immutable(request: Request, exc: psycopg.Error) -> JSONResponse:
        return JSONResponse(_body("conflict", (exc.diag.message_primary or str(exc))[:300]), status_code=409)
