"""`liftwatch broker-hook`: EMQX's HTTP authentication and authorization, from Liftwatch's device logins.

EMQX (docs/deploy.md) calls
* POST /mqtt/auth  {"username", "password", "clientid"} on every CONNECT. The answer is
  {"result": "allow", "is_superuser": false, "acl": [...]} for an active login whose secret
  matches `device_credentials.secret_hash`, else {"result": "deny"}. The `acl` rules (EMQX 5.8+)
  are the account's grants from liftwatch.devices, so EMQX enforces them per message itself,
  without a call per PUBLISH.
* POST /mqtt/acl   {"username", "action", "topic"}: the same rules, one question at a time,
  for an EMQX configured with this hook as its authorization source instead.
A denial is always an explicit "deny", never "ignore", so no other authenticator or
authorizer down EMQX's chain can let the client through. Outside development the broker must
present `Authorization: Bearer <LIFTWATCH_BROKER_HOOK_TOKEN>`; the hook belongs on the broker's
network and nowhere else.
"""

from __future__ import annotations

import hmac
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from liftwatch import __version__
from liftwatch.db import open_pool
from liftwatch.devices import check_secret, emqx_acl, may
from liftwatch.errors import ConfigurationError
from liftwatch.settings import Settings

log = logging.getLogger(__name__)

LOOKUP = "SELECT secret_hash FROM device_credentials WHERE username = %s AND revoked_at IS NULL"
POOL_SIZE = 8  # EMQX's own HTTP pool per node defaults to 8 connections
MIN_TOKEN_LEN = 32


class AuthRequest(BaseModel):
    username: str = Field("", max_length=256)
    password: str = Field("", max_length=1024)
    clientid: str = Field("", max_length=256)


class AclRequest(BaseModel):
    username: str = Field("", max_length=256)
    action: str = Field("", max_length=16)
    topic: str = Field("", max_length=65535)


DENY = {"result": "deny"}


def create_app(settings: Settings) -> FastAPI:
    token = settings.broker_hook_token
    if settings.env != "development" and (not token or len(token) < MIN_TOKEN_LEN):
        raise ConfigurationError(f"LIFTWATCH_BROKER_HOOK_TOKEN must be set ({MIN_TOKEN_LEN}+ random characters) "
                                 f"with LIFTWATCH_ENV={settings.env}: the broker presents it as a bearer token")
    expected = f"Bearer {token}".encode() if token else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = open_pool(settings.database_url, max_size=POOL_SIZE, application_name="liftwatch-broker-hook")
        app.state.pool = pool
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(title="Liftwatch broker hook", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)

    def caller_checked(request: Request) -> None:
        if expected is None:
            return
        got = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(got, expected):
            raise HTTPException(status_code=401, detail="the broker's bearer token is missing or wrong")

    @app.post("/mqtt/auth")
    def authenticate(body: AuthRequest, request: Request) -> dict:
        caller_checked(request)
        with app.state.pool.connection() as conn:
            row = conn.execute(LOOKUP, (body.username,)).fetchone()
        if row is None or not check_secret(row[0], body.password):
            log.info("broker login refused", extra={"username": body.username[:64], "clientid": body.clientid[:64]})
            return DENY
        return {"result": "allow", "is_superuser": False, "acl": emqx_acl(body.username)}

    @app.post("/mqtt/acl")
    def authorize(body: AclRequest, request: Request) -> dict:
        caller_checked(request)
        if body.action not in ("publish", "subscribe"):
            return DENY
        with app.state.pool.connection() as conn:  # a revoked login loses its rights here too
            active = conn.execute(LOOKUP, (body.username,)).fetchone() is not None
        return {"result": "allow"} if active and may(body.username, body.action, body.topic) else DENY

    @app.get("/healthz")
    def healthz() -> dict:
        with app.state.pool.connection() as conn:
            conn.execute("SELECT 1")
        return {"status": "ok", "version": __version__}

    return app
