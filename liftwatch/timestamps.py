"""RFC 3339 date-times, strictly: the one rule for a device's `ts` (and, by issue #20, a signer's
`signed_at`).

Accepted: `YYYY-MM-DD`, `T` (or a space, which RFC 3339 section 5.6 allows "for the sake of
readability"), `hh:mm:ss`, an optional fraction of one or more digits after a dot, then `Z`
or an offset `+hh:mm` / `-hh:mm`; at most 40 characters. Refused: everything else that
`datetime.fromisoformat` would also take (ISO week and ordinal dates, the basic format
without separators, comma fractions, a missing seconds field, offsets without a colon, with
seconds or hour-only, no offset at all), lower-case `t`/`z` (RFC 3339 lets an application
require upper case; Python never accepted them here), a leap second `:60` (a `datetime`
cannot hold it), and dates that do not exist. Digits are ASCII only. A fraction beyond
microseconds is truncated, as `fromisoformat` does.

The grammar is a regular expression so that the ingestor's msgspec fast path can check it in
C while it decodes (`RFC3339_PATTERN`); the calendar is checked by `datetime.fromisoformat`,
which for a string of this grammar means exactly RFC 3339. Both validation paths use both.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

MAX_LENGTH: Final = 40  # longest ts accepted (with an offset, 14 fraction digits)
RFC3339_PATTERN: Final = (r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
                          r"(?:Z|[+-][0-9]{2}:[0-9]{2})\Z")
_RFC3339: Final = re.compile(RFC3339_PATTERN)


def is_rfc3339(value: str) -> bool:
    """The grammar only (not the calendar): what the fast path checks before fromisoformat."""
    return len(value) <= MAX_LENGTH and _RFC3339.match(value) is not None


def parse_rfc3339(value: str) -> datetime:
    """An aware datetime, or ValueError saying why the string is not a strict RFC 3339 date-time."""
    if not is_rfc3339(value):
        raise ValueError("not an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.frac] and Z or ±hh:mm)")
    return datetime.fromisoformat(value)  # ValueError for a day, hour or offset that does not exist
