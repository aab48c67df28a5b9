"""Structured logging: key=value text for people, one JSON object per line for machines."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        msg = record.getMessage()
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            return orjson.dumps(
                {"ts": ts, "level": record.levelname.lower(), "logger": record.name, "msg": msg, **fields},
                default=str,
            ).decode()
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{ts} {record.levelname:<7} {record.name}: {msg}" + (f" {extra}" if extra else "")


def setup_logging(level: str = "INFO", *, as_json: bool = False) -> None:
    """Configure the root logger once, from the CLI; libraries never call this."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
