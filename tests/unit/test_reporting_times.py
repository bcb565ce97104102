"""The reporting projection keeps times as naive UTC. A logged event whose business time
lies beyond the UTC calendar (intake refuses one now; an older log may hold one) is stored
as the nearest representable instant instead of stalling the projection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite

from services.reporting.handlers import ReportQuery
from services.reporting.projection import _naive_utc, _UtcTime

LATE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))
EARLY = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
PLAIN = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))


def test_times_beyond_the_utc_calendar_are_kept_at_its_edges() -> None:
    assert _naive_utc(LATE) == datetime.max
    assert _naive_utc(EARLY) == datetime.min
    assert _naive_utc(PLAIN) == datetime(2026, 3, 1, 10, 30)


def test_each_database_is_given_the_same_naive_utc() -> None:
    for dialect in (sqlite.dialect(), postgresql.dialect()):  # type: ignore[no-untyped-call]
        bind = _UtcTime().bind_processor(dialect)
        for moment, stored in ((LATE, datetime.max), (PLAIN, datetime(2026, 3, 1, 10, 30))):
            value = bind(moment)
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            assert value == stored
        assert bind(PLAIN.astimezone(UTC)) in (
            "2026-03-01 10:30:00.000000",
            datetime(2026, 3, 1, 10, 30),
        )


def test_a_report_asked_at_a_time_beyond_the_utc_calendar_is_refused_by_name() -> None:
    """Answered as an invalid query naming the field, not as the report failing."""
    for field in ("as_of", "occurred_as_of"):
        with pytest.raises(ValidationError) as caught:
            ReportQuery.model_validate_json(json.dumps({field: "9999-12-31T23:59:59-14:00"}))
        (error,) = caught.value.errors()
        assert error["loc"] == (field,) and "UTC" in error["msg"]
    taken = ReportQuery.model_validate_json(json.dumps({"as_of": "9999-12-31T10:00:00-05:00"}))
    assert taken.as_of is not None
