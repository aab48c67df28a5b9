"""Typed CSV files for bulk imports (the unit registry, legacy maintenance records).

A file is described by its `Column`s; `read_rows` checks the header and converts every cell,
raising ImportFileError with the line and the column named, so the person fixing the file
knows exactly where to look. Nothing here touches the database.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

from liftwatch.contract import UNIT_ID_RE
from liftwatch.errors import ImportFileError

Converter = Callable[[str], Any]


@dataclass(frozen=True)
class Column:
    name: str
    convert: Converter
    required: bool
    doc: str


def text(max_len: int = 2000) -> Converter:
    def conv(v: str) -> str | None:
        v = v.strip()
        if len(v) > max_len:
            raise ValueError(f"longer than {max_len} characters")
        return v or None
    return conv


def ident(v: str) -> str | None:
    v = v.strip()
    if not v:
        return None
    if not UNIT_ID_RE.match(v):
        raise ValueError(f"{v!r} is not a valid id (letters, digits, _ and -, at most 64)")
    return v


def iso_date(v: str) -> date | None:
    v = v.strip()
    if not v:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        raise ValueError(f"{v!r} is not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a calendar date") from None


def int_in(lo: int, hi: int) -> Converter:
    def conv(v: str) -> int | None:
        v = v.strip()
        if not v:
            return None
        if not re.fullmatch(r"-?\d+", v) or not lo <= int(v) <= hi:
            raise ValueError(f"{v!r} is not an integer in [{lo}, {hi}]")
        return int(v)
    return conv


def decimal_in(lo: float, hi: float) -> Converter:
    def conv(v: str) -> Decimal | None:
        v = v.strip()
        if not v:
            return None
        try:
            d = Decimal(v)
        except InvalidOperation:
            raise ValueError(f"{v!r} is not a number") from None
        if not d.is_finite() or not lo <= d <= hi:
            raise ValueError(f"{v!r} is outside [{lo}, {hi}]")
        return d
    return conv


def choice(options: Sequence[str], default: str | None = None) -> Converter:
    def conv(v: str) -> str | None:
        v = v.strip()
        if not v:
            return default
        if v not in options:
            raise ValueError(f"{v!r} is not one of {', '.join(options)}")
        return v
    return conv


def read_rows(stream: TextIO, columns: Sequence[Column], *, command: str) -> list[tuple[int, dict[str, Any]]]:
    """Every data row as (line number, converted values); the first problem raises ImportFileError."""
    names = [c.name for c in columns]
    reader = csv.DictReader(stream)
    header = reader.fieldnames or []
    missing = [c.name for c in columns if c.required and c.name not in header]
    if missing:
        raise ImportFileError(f"header lacks required column(s): {', '.join(missing)}", line=1)
    unknown = [h for h in header if h not in names]
    if unknown:
        raise ImportFileError(f"unknown column(s): {', '.join(unknown)} (see `{command} --help`)", line=1)
    rows: list[tuple[int, dict[str, Any]]] = []
    for raw in reader:
        line = reader.line_num
        if None in raw:
            raise ImportFileError("more fields than the header has", line=line)
        row: dict[str, Any] = {}
        for col in columns:
            try:
                row[col.name] = col.convert(raw.get(col.name) or "")
            except ValueError as exc:
                raise ImportFileError(f"column {col.name}: {exc}", line=line, column=col.name) from None
            if col.required and row[col.name] is None:
                raise ImportFileError(f"column {col.name} is required", line=line, column=col.name)
        rows.append((line, row))
    return rows


def columns_help(columns: Sequence[Column]) -> str:
    """The columns as --help and the README list them."""
    buf = io.StringIO()
    for c in columns:
        buf.write(f"  {c.name}{' (required)' if c.required else ''}: {c.doc}\n")
    return buf.getvalue()
