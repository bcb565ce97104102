"""Points in time as people type them on the command line or in a query string."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_RELATIVE = re.compile(r"^-(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TIME_HELP = (
    "ISO 8601 (2027-03-01, 2027-03-01T09:30, 2027-03-01T09:30:00+01:00; no zone: local "
    "time; a date: its start), 'now', or an offset into the past like -2h, -7d"
)


def parse_time(text: str, now: datetime) -> datetime:
    """A point in time from the command line; `ValueError` with the accepted forms."""
    cleaned = text.strip()
    if cleaned == "now":
        return now
    relative = _RELATIVE.match(cleaned)
    if relative:
        amount, unit = int(relative.group(1)), _UNITS[relative.group(2)]
        return now - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use {TIME_HELP}") from None
    return moment if moment.tzinfo is not None else moment.astimezone()
