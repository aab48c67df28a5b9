"""RFC 3339 timestamps, exactly: `2026-12-06T10:11:07.955Z` or `…+08:00`, nothing else.

`datetime.fromisoformat` accepts much more of ISO 8601 (week dates, the basic format, comma
fractions, offsets with seconds); a time stored in a signed record or a telemetry row must be
readable by every RFC 3339 parser elsewhere, so such strings are refused here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

# RFC 3339 section 5.6; "T" and "Z" may be lower case (its note), the offset is +hh:mm or Z
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII)
_UTC = UTC


def parse_rfc3339(value: str) -> datetime:
    """An aware datetime; ValueError says why the string is not RFC 3339."""
    m = _RFC3339.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError("not an RFC 3339 time (YYYY-MM-DDThh:mm:ss[.fraction] with Z or ±hh:mm)")
    y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
    if int(s) > 59:
        raise ValueError("leap seconds (:60) are not accepted")
    if z:
        tz = _UTC
    else:
        if int(oh) > 23 or int(om) > 59:
            raise ValueError("offset out of range")
        delta = timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(-delta if sign == "-" else delta) if delta else _UTC
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tz)
    except ValueError as exc:  # month 13, 31 February, hour 24 …
        raise ValueError(f"not a valid time ({exc})") from None
