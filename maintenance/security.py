"""Security headers on every response (a pure ASGI middleware, so streaming is untouched).

    X-Content-Type-Options: nosniff       X-Frame-Options: DENY       Referrer-Policy: no-referrer
    Content-Security-Policy               strict; /docs and /redoc get their own (below)
    Cache-Control: no-store               on /api/ responses (tokens, personal data)
    Strict-Transport-Security             only when the request came over https (behind a
                                          proxy: uvicorn --proxy-headers with --forwarded-allow-ips)

`wrap_app` puts the middleware outside Starlette's ServerErrorMiddleware, so a 500 carries
the headers too (user middleware added with add_middleware sits inside it).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Server-rendered pages with same-origin scripts and style sheets only (no inline script or
#: style, not even attributes); nothing may frame us.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
#: FastAPI's Swagger UI and ReDoc pages: inline bootstrap scripts and assets from a CDN.
DOCS_CSP = ("default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src 'self' https://fonts.gstatic.com; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")
HSTS = "max-age=31536000"

_COMMON = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"))


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, docs_paths: tuple[str, ...] = DOCS_PATHS) -> None:
        self.app = app
        self.docs_paths = docs_paths

    def headers_for(self, scope: Scope) -> list[tuple[str, str]]:
        path: str = scope.get("path", "")
        docs = any(path == p or path.startswith(p + "/") for p in self.docs_paths)
        out = [*_COMMON, ("Content-Security-Policy", DOCS_CSP if docs else CSP)]
        if path.startswith("/api/"):
            out.append(("Cache-Control", "no-store"))
        if scope.get("scheme") == "https":
            out.append(("Strict-Transport-Security", HSTS))
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.headers_for(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra:
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def wrap_app(app: FastAPI) -> None:
    """Make SecurityHeaders the outermost layer of `app` (see the module docstring)."""
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: SecurityHeaders(build())  # type: ignore[method-assign]
