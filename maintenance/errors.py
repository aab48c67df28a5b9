"""API errors: every client mistake is a 4xx JSON body {"error": code, "detail": text, "field"?}.

    ApiError(status, code, detail, field=None)   raised by route code
    RequestValidationError (FastAPI)             -> 422 with the first offending field named
    psycopg IntegrityError from a trigger        -> 409 "immutable"
    psycopg DataError from the client's values   -> 422 "invalid_value" (NUL in text, out of range, ...)

The OpenAPI schema documents that body (ERROR_SCHEMA) in place of FastAPI's default 422 model,
so generated clients and schema-checking tests see what the API really sends.
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


ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "a code to act on: invalid_request, not_found, ..."},
        "detail": {"type": "string", "description": "what is wrong, for people"},
        "field": {"type": "string", "description": "the offending field, when there is one"},
        "errors": {"type": "array", "description": "422 only: every offending field (at most 20)",
                   "items": {"type": "object", "required": ["field", "msg"],
                             "properties": {"field": {"type": "string"}, "msg": {"type": "string"}}}},
    },
}


def _document_error_body(app: FastAPI) -> None:
    """Replace FastAPI's HTTPValidationError schema (every 422 refers to it) with ERROR_SCHEMA."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in components:
                components["HTTPValidationError"] = ERROR_SCHEMA
                components.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# Data exceptions (SQLSTATE class 22) a request's values cause; other class-22 errors (division
# by zero, say) are our bugs and stay 500. None: psycopg's own check, e.g. a NUL in a text value.
_CLIENT_DATA_ERRORS = {
    None: "text values may not contain NUL (0x00) characters",
    "22001": "a value is too long",
    "22003": "a number is out of range",
    "22007": "a date or time is invalid",
    "22008": "a date or time is out of range",
    "22021": "a value contains a character that is not allowed",
    "22P02": "a value has the wrong form",
    "22P05": "a value contains a character that is not allowed",
}


def install(app: FastAPI) -> None:
    _document_error_body(app)

    @app.exception_handler(psycopg.DataError)
    async def _bad_data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        if exc.sqlstate not in _CLIENT_DATA_ERRORS:
            raise exc
        return JSONResponse(_body("invalid_value", _CLIENT_DATA_ERRORS[exc.sqlstate]), status_code=422)

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
