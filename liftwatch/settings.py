"""One Settings object for every Liftwatch process, read from LIFTWATCH_* environment variables.

Build it with `get_settings()` (cached) rather than at import time, so tests and the CLI can
override the environment first and call `get_settings.cache_clear()`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Passwords that ship in examples, compose files and docs. Refused outside development.
DEV_JWT_SECRET = "liftwatch-development-only-secret-do-not-use"
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
KNOWN_DEFAULT_PASSWORDS = frozenset({"postgres", "liftwatch", "password", "changeme", "change-me", "secret"})
MIN_RETENTION_DAYS = 31  # the longest look back into raw rows (30-day rules) plus a day of chunk slack


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """The broker address and credentials parsed from `LIFTWATCH_MQTT_URL`."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """Parse mqtt://[user:pass@]host[:port] (mqtts:// for TLS); raise ValueError naming the problem."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"MQTT URL has no host: {url!r}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError as exc:  # a non-numeric port
        raise ValueError(f"MQTT URL has a bad port: {url!r}") from exc
    return MqttEndpoint(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "mqtts",
    )


class Settings(BaseSettings):
    """Everything configurable. Environment: LIFTWATCH_<FIELD> (e.g. LIFTWATCH_DATABASE_URL)."""

    model_config = SettingsConfigDict(env_prefix="LIFTWATCH_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development", description="development allows the local defaults; anything else refuses them"
    )
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/liftwatch", description="PostgreSQL/TimescaleDB DSN"
    )
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://[user:pass@]host:port")
    log_level: str = "INFO"
    log_json: bool = Field(False, description="emit one JSON object per log line")

    # ingest
    ingest_group: str | None = Field(
        None, description="shared-subscription group for several replicas on a cluster broker; unset = a plain "
                          "subscription (which, unlike a shared one on Mosquitto 2.0, survives a broker restart)")
    ingest_lease_ttl_s: float = Field(
        10.0, ge=3.0, description="--lease: a holder that stops renewing (hung, cut off) is replaced after this "
                                  "long; a killed one at once")
    ingest_allow_volatile_group: bool = Field(
        False, description="let --group run on a broker not known to keep shared subscriptions across a restart "
                           "(Mosquitto loses messages then; see docs/deploy.md)")
    ingest_client_id: str | None = Field(None, description="stable MQTT client id; default derived from host name")
    ingest_lease: bool = Field(
        False, description="active/standby: two replicas with one client id; only the holder of the client id's "
                           "lease in PostgreSQL consumes, the other takes over when it dies (docs/reliability.md)")
    ingest_session_expiry_s: int = Field(
        7 * 24 * 3600, description="how long the broker keeps our session (and backlog) while we are away"
    )
    metrics_port: int = Field(9464, description="Prometheus metrics port for the ingestor; 0 disables")
    registry_refresh_s: float = Field(30.0, description="how often the ingestor reloads the unit registry")
    gap_settle_s: float = Field(
        30.0, description="how long a seq hole may stay open (out-of-order delivery) before it is recorded as a gap"
    )
    future_tolerance_s: float = Field(300.0, description="ts further than this in the future is rejected")
    ingest_unit_rate: float = Field(20.0, ge=0, description="samples/s one unit may sustain (device clock); 0 disables")
    ingest_unit_burst: float = Field(600.0, ge=1, description="samples one unit may send at once")

    broker_passwd_file: str = Field("deploy/secrets/passwd", description="Mosquitto password file `liftwatch devices` "
                                    "maintains; empty = none (EMQX asks `liftwatch broker-hook` instead)")
    broker_acl_file: str = Field("deploy/secrets/acl", description="Mosquitto ACL file `liftwatch devices` writes")

    broker_hook_host: str = Field("127.0.0.1", description="address `liftwatch broker-hook` listens on")
    broker_hook_port: int = Field(8081, description="port `liftwatch broker-hook` listens on")
    broker_hook_token: str | None = Field(
        None, description="bearer token the broker must send to `liftwatch broker-hook` (32+ characters; "
                          "required outside development)")

    # api
    api_host: str = Field("127.0.0.1", description="address `liftwatch api` listens on")
    api_port: int = Field(8000, description="port `liftwatch api` listens on")
    jwt_secret: str = Field(DEV_JWT_SECRET, description="HMAC key for access tokens (32+ random bytes in production)")
    access_token_minutes: int = Field(15, ge=1, le=24 * 60, description="lifetime of an access token")
    signature_clock_skew_s: float = Field(300.0, description="how far a signature's signed_at may be from the server clock")
    max_body_bytes: int = Field(256 * 1024, description="largest request body the API accepts")
    analytics_every_s: float = Field(60.0, gt=0, description="period of `liftwatch analytics loop`")
    analytics_grace_hours: float = Field(6.0, ge=0, description="late telemetry this old is re-aggregated")
    retention_days: int | None = Field(
        None, ge=MIN_RETENTION_DAYS,
        description=f"drop raw telemetry/event chunks older than this; unset keeps all. At least {MIN_RETENTION_DAYS}: "
                    "unverified visits and frequent faults look 30 days back into the raw rows")
    offline_after_min: float = Field(15.0, gt=0, description="a unit silent this long gets an offline alert")
    countersign_after_h: float = Field(72.0, gt=0, description="signed but unconfirmed this long: countersign_missing")
    max_advised_interval_days: int = Field(15, ge=1, le=90, description="longest advisory half-monthly interval (on-demand maintenance); 15 = statutory")
    frequent_fault_threshold: int = Field(10, ge=1, description="raised events of one code in 30 days that make frequent_faults")
    api_pool_size: int = Field(10, ge=1, description="database connections of the API process")
    web_session_minutes: int = Field(
        480, ge=5, le=7 * 24 * 60,
        description="lifetime of a web page login (HttpOnly cookie); a working shift, not the 15-minute API token")
    display_tz: str = Field("Asia/Shanghai", description="time zone the web pages show times in")
    web_alert_refresh_s: float = Field(30.0, gt=0, description="how often the dashboard re-reads the alerts")
    public_base_url: str | None = Field(
        None, description="the address printed in QR codes (https://lifts.example.gov.cn); "
                          "unset = the address the request came to")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="addresses or networks (comma-separated) of reverse proxies whose X-Forwarded-For/-Proto "
                    "the API believes; empty (the default) uses the TCP peer, so clients cannot spoof their "
                    "address past the login throttle and the audit log")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="browser origins (scheme://host[:port], comma-separated or a JSON list) allowed to call "
                    "the API cross-origin; empty (the default) sends no CORS headers at all")

    @property
    def offline_after_s(self) -> float:
        """One cutoff for 'online' everywhere: the offline alert, unit status, KPIs, map, public page."""
        return self.offline_after_min * 60

    @field_validator("database_url")
    @classmethod
    def _check_dsn(cls, v: str) -> str:
        scheme = urlsplit(v).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(f"LIFTWATCH_DATABASE_URL must be a postgresql:// DSN, got scheme {scheme!r}")
        return v

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, v: object) -> object:
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ValueError(f"LIFTWATCH_TRUSTED_PROXIES: {p!r} is not an IP address or network "
                                 "(trusting every peer, '*', would let any client forge its address)") from None
        return v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str):
            v = json.loads(v) if v.strip().startswith("[") else [o for o in v.split(",") if o.strip()]
        if isinstance(v, list):
            v = [o.strip() if isinstance(o, str) else o for o in v]
            bad = [o for o in v if not isinstance(o, str) or not _ORIGIN.fullmatch(o)]
            if bad:
                raise ValueError(f"LIFTWATCH_CORS_ORIGINS takes origins like https://app.example.com "
                                 f"(no path, no trailing slash, no '*'), got {bad!r}")
        return v

    @field_validator("display_tz")
    @classmethod
    def _check_tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"LIFTWATCH_DISPLAY_TZ must be an IANA time zone like Asia/Shanghai, got {v!r}") from None
        return v

    @field_validator("public_base_url")
    @classmethod
    def _check_public_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", v):
            raise ValueError(f"LIFTWATCH_PUBLIC_BASE_URL must be like https://lifts.example.org, got {v!r}")
        return v.rstrip("/")

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt(cls, v: str) -> str:
        parse_mqtt_url(v)
        return v

    @model_validator(mode="after")
    def _refuse_defaults_outside_development(self) -> Settings:
        if self.env == "development":
            return self
        problems = []
        db_pw = urlsplit(self.database_url).password
        if not db_pw or unquote(db_pw) in KNOWN_DEFAULT_PASSWORDS:
            problems.append("LIFTWATCH_DATABASE_URL needs a real password (not empty, not a documented default)")
        mqtt = self.mqtt
        if not mqtt.password or mqtt.password in KNOWN_DEFAULT_PASSWORDS:
            problems.append("LIFTWATCH_MQTT_URL needs a user and a real password")
        if self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < 32:
            problems.append("LIFTWATCH_JWT_SECRET must be set to at least 32 random characters")
        if problems:
            raise ValueError(f"refusing default credentials with LIFTWATCH_ENV={self.env}: " + "; ".join(problems))
        return self

    @property
    def mqtt(self) -> MqttEndpoint:
        return parse_mqtt_url(self.mqtt_url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return Settings()
