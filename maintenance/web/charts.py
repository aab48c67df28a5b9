"""Inline SVG for the pages: line, bar and stacked-bar charts of a unit's rollups, and the
distribution map of units by latitude and longitude (no tile server is reachable).

Output is markup for Jinja's `|safe`: every text that comes from data goes through
`markupsafe.escape`. Colours come from CSS classes (the CSP allows no inline styles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

W, H = 640, 220           # viewBox of a chart; CSS scales it to the page width
PAD_L, PAD_R, PAD_T, PAD_B = 56, 12, 12, 28
MODE_ORDER = ("normal", "inspection", "stopped", "out_of_service", "fire_return", "firefighter",
              "emergency_power", "earthquake", "unknown")
MAP_W, MAP_H = 640, 420
MAP_MAX_POINTS = 3000     # beyond this, units are merged into grid cells (an SVG of 50 k dots is 5 MB)
MAP_CELL_PX = 12
MAP_LABELS_UP_TO = 40     # few units: each dot also carries its unit id
MAP_LABEL_PX = 11         # the labels' font size (app.css .pt-label), in the viewBox's units
MAP_LABEL_GAP = 9         # from a dot's centre to its label
GRADE_RANK = {"A": 1, "B": 2, "C": 3, "D": 4}
STATE_RANK = {"ok": 0, "warning": 1, "offline": 2, "out_of_service": 3, "critical": 4}


def _fmt(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def _frame(label: str, lo: float, hi: float, days: Sequence[datetime]) -> list[str]:
    """Axes, three y ticks and first/middle/last day labels."""
    out = [f'<svg viewBox="0 0 {W} {H}" class="chart" role="img" aria-label="{escape(label)}">',
           f"<title>{escape(label)}</title>"]
    for i in range(3):
        v = lo + (hi - lo) * i / 2
        y = _y(v, lo, hi)
        out.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    n = len(days)
    for i in sorted({0, n // 2, n - 1}):
        x = _x(i, n)
        out.append(f'<text class="tick" x="{x:.1f}" y="{H - 8}" text-anchor="middle">{days[i]:%m-%d}</text>')
    return out


def _x(i: int, n: int) -> float:
    span = W - PAD_L - PAD_R
    return PAD_L + (span * (i + 0.5) / n)


def _y(v: float, lo: float, hi: float) -> float:
    return PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / ((hi - lo) or 1))


def _range(values: list[float], zero: bool) -> tuple[float, float]:
    lo, hi = (0.0 if zero else min(values)), max(values)
    if hi == lo:
        hi = lo + 1
    pad = (hi - lo) * 0.08
    return (lo if zero else lo - pad), hi + pad


def line_chart(label: str, rows: list[dict[str, Any]], series: Sequence[tuple[str, str]]) -> Markup:
    """One polyline per (column, css class) over the rows' buckets; gaps where a value is missing."""
    values = [float(r[c]) for r in rows for c, _ in series if r.get(c) is not None]
    if not values:
        return Markup("")
    lo, hi = _range(values, zero=False)
    days = [r["bucket"] for r in rows]
    out = _frame(label, lo, hi, days)
    for col, css in series:
        seg: list[str] = []
        segments: list[list[str]] = [seg]
        for i, r in enumerate(rows):
            if r.get(col) is None:
                seg = []
                segments.append(seg)
                continue
            seg.append(f"{_x(i, len(rows)):.1f},{_y(float(r[col]), lo, hi):.1f}")
        for s in segments:
            if len(s) == 1:
                x, y = s[0].split(",")
                out.append(f'<circle class="{css}" cx="{x}" cy="{y}" r="2.5"/>')
            elif s:
                out.append(f'<polyline class="line {css}" points="{" ".join(s)}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def bar_chart(label: str, rows: list[dict[str, Any]], col: str, css: str = "bar") -> Markup:
    values = [float(r[col] or 0) for r in rows]
    if not values or max(values) == 0:
        return Markup("")
    lo, hi = _range(values, zero=True)
    out = _frame(label, lo, hi, [r["bucket"] for r in rows])
    bw = max(1.0, (W - PAD_L - PAD_R) / len(rows) * 0.7)
    for i, v in enumerate(values):
        y = _y(v, lo, hi)
        out.append(f'<rect class="{css}" x="{_x(i, len(rows)) - bw / 2:.1f}" y="{y:.1f}" width="{bw:.1f}" '
                   f'height="{_y(lo, lo, hi) - y:.1f}"><title>{rows[i]["bucket"]:%Y-%m-%d}: {v:.0f}</title></rect>')
    out.append("</svg>")
    return Markup("".join(out))


def modes_chart(label: str, rows: list[dict[str, Any]], names: dict[str, str]) -> tuple[Markup, list[str]]:
    """Stacked hours per mode per day; returns the chart and the modes present (for the legend)."""
    hours = [{m: s / 3600 for m, s in (r["mode_seconds"] or {}).items()} for r in rows]
    present = [m for m in MODE_ORDER if any(h.get(m) for h in hours)]
    present += sorted({m for h in hours for m in h} - set(present))
    totals = [sum(h.values()) for h in hours]
    if not totals or max(totals) == 0:
        return Markup(""), []
    lo, hi = _range(totals, zero=True)
    out = _frame(label, lo, hi, [r["bucket"] for r in rows])
    bw = max(1.0, (W - PAD_L - PAD_R) / len(rows) * 0.7)
    for i, h in enumerate(hours):
        base = 0.0
        for m in present:
            v = h.get(m, 0.0)
            if not v:
                continue
            y0, y1 = _y(base, lo, hi), _y(base + v, lo, hi)
            out.append(f'<rect class="mode-{escape(m)}" x="{_x(i, len(rows)) - bw / 2:.1f}" y="{y1:.1f}" '
                       f'width="{bw:.1f}" height="{y0 - y1:.1f}"><title>{rows[i]["bucket"]:%Y-%m-%d} '
                       f'{escape(names.get(m, m))}: {v:.1f} h</title></rect>')
            base += v
    out.append("</svg>")
    return Markup("".join(out)), present


# --- the map ---------------------------------------------------------------------------------------

def _project(points: list[dict[str, Any]]) -> tuple[Any, float]:
    lats = [p["lat"] for p in points]
    lons = [p["lon"] for p in points]
    lat0, lat1, lon0, lon1 = min(lats), max(lats), min(lons), max(lons)
    kx = math.cos(math.radians((lat0 + lat1) / 2))  # equirectangular, true to scale at the middle
    span_x = max((lon1 - lon0) * kx, 0.005)
    span_y = max(lat1 - lat0, 0.005)
    pad = 24
    scale = min((MAP_W - 2 * pad) / span_x, (MAP_H - 2 * pad) / span_y)
    cx, cy = (lon0 + lon1) / 2, (lat0 + lat1) / 2

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return MAP_W / 2 + (lon - cx) * kx * scale, MAP_H / 2 - (lat - cy) * scale

    return xy, scale


def _label_width(text: str) -> float:
    """A generous estimate of a label's width (no font metrics here): 0.7 em per Latin character
    (capitals and digits of a sans-serif are 0.6-0.8 em), 1 em per wide one."""
    return sum(MAP_LABEL_PX * (1.0 if ord(ch) >= 0x2E80 else 0.7) for ch in text)


def _map_label(text: str, x: float, y: float) -> str:
    """A dot's label, right of the dot, or left of it (text-anchor end) where it would run past the
    right edge; kept inside vertically near the top and bottom."""
    width = _label_width(text)
    anchor = ""
    lx = x + MAP_LABEL_GAP
    if lx + width > MAP_W - 2 and x - MAP_LABEL_GAP - width >= 2:
        lx, anchor = x - MAP_LABEL_GAP, ' text-anchor="end"'
    ly = min(max(y + 4, MAP_LABEL_PX), MAP_H - 4)  # y is the baseline: the ascent above, descenders below
    return f'<text class="pt-label" x="{lx:.1f}" y="{ly:.1f}"{anchor}>{escape(text)}</text>'


def distribution_map(points: list[dict[str, Any]], label: str, describe) -> tuple[Markup, bool]:
    """Dots by position with classes g-<grade> and s-<state> (CSS colours one or the other); each
    dot links to its unit. Over MAP_MAX_POINTS units, dots merge into grid cells. Returns the
    SVG and whether it merged."""
    if not points:
        return Markup(""), False
    xy, _ = _project(points)
    out = [f'<svg viewBox="0 0 {MAP_W} {MAP_H}" class="map" id="unit-map" data-colour="grade" role="group" '
           f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
           f'<rect class="map-bg" x="0" y="0" width="{MAP_W}" height="{MAP_H}"/>']
    binned = len(points) > MAP_MAX_POINTS
    if not binned:
        labels = len(points) <= MAP_LABELS_UP_TO
        for p in points:
            x, y = xy(p["lat"], p["lon"])
            grade = p["risk_grade"] or "none"
            label = _map_label(p["unit_id"], x, y) if labels else ""
            out.append(f'<a href="/units/{escape(p["unit_id"])}"><title>{escape(describe(p))}</title>'
                       f'<circle class="pt g-{grade} s-{p["state"]}" cx="{x:.1f}" cy="{y:.1f}" r="6"/>{label}</a>')
    else:
        cells: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for p in points:
            x, y = xy(p["lat"], p["lon"])
            cells.setdefault((int(x // MAP_CELL_PX), int(y // MAP_CELL_PX)), []).append(p)
        for (cx, cy), ps in cells.items():
            worst_g = max((p["risk_grade"] for p in ps if p["risk_grade"]), key=GRADE_RANK.get, default="none")
            worst_s = max((p["state"] for p in ps), key=STATE_RANK.get)
            r = min(MAP_CELL_PX, 3 + 1.5 * math.sqrt(len(ps)))
            out.append(f'<circle class="pt g-{worst_g} s-{worst_s}" cx="{(cx + 0.5) * MAP_CELL_PX:.0f}" '
                       f'cy="{(cy + 0.5) * MAP_CELL_PX:.0f}" r="{r:.1f}"><title>{len(ps)}</title></circle>')
    out.append("</svg>")
    return Markup("".join(out)), binned
