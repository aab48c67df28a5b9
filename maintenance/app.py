"""The FastAPI application behind `liftwatch api` (JSON API under /api/v1, OpenAPI at /docs)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from liftwatch import __version__
from liftwatch.db import open_pool
from liftwatch.settings import Settings
from maintenance import (
    auth,
    errors,
    routes_alerts,
    routes_audit,
    routes_hazards,
    routes_insights,
    routes_registry,
    routes_status,
    routes_workorders,
    security,
    web,
)
from maintenance.throttle import LoginThrottle

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse request bodies over `max_bytes` (413) before the application reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen, too_large, started = 0, False, False

        async def limited() -> dict:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def tracked(message: dict) -> None:
            nonlocal started
            if too_large and not started:
                return  # FastAPI turns a failed body read into a 400; the answer is our 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except _TooLarge:
            pass
        if too_large and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = JSONResponse({"error": "too_large", "detail": f"request body over {self.max_bytes} bytes"},
                            status_code=413)
        await resp(scope, receive, send)


class _TooLarge(Exception):
    pass


# uvicorn's own options for serving this app (the CLI and the tests' live server): its proxy
# headers are off because the app applies them itself, from LIFTWATCH_TRUSTED_PROXIES only
# (uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 by default)
SERVER_OPTIONS = {"proxy_headers": False, "log_config": None}


def create_app(settings: Settings) -> FastAPI:
    """Build the app; the connection pool opens with the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = open_pool(settings.database_url, max_size=settings.api_pool_size, application_name="liftwatch-api")
        app.state.pool = pool
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(title="Liftwatch API", version=__version__, lifespan=lifespan,
                  description="Elevator registry, statutory maintenance work orders with Ed25519 "
                              "signatures, tamper-evident ledger, hazards and alerts.")
    app.state.settings = settings
    app.state.login_throttle = LoginThrottle()
    errors.install(app)
    app.include_router(auth.router)
    app.include_router(routes_workorders.router)
    app.include_router(routes_registry.router)
    app.include_router(routes_status.router)
    app.include_router(routes_hazards.router)
    app.include_router(routes_alerts.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_insights.router)
    web.install(app)  # the pages; after the API routers, and after errors.install (it wraps its handlers)

    @app.get("/healthz", tags=["health"], summary="Liveness and database reachability")
    def healthz() -> dict:
        with app.state.pool.connection() as conn:
            conn.execute("SELECT 1")
        return {"status": "ok", "version": __version__}

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # closed unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["X-Total-Count", "Retry-After"], max_age=600)
    if settings.trusted_proxies:  # outermost but for the headers: the peer is rewritten before anything reads it
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    security.wrap_app(app)
    return app
