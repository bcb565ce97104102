"""Reporting's read model: project summaries and the audit trail of every event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    select,
)
from sqlalchemy.engine import Dialect

from contracts.base import RecordedEvent
from contracts.projects import AGGREGATE as PROJECT
from contracts.queries import AuditEntry, AuditQuery
from shared.db import JsonDocument
from shared.projection import Projection
from shared.projects_view import apply_project_event, projects_table

NAME = "reporting"


class _UtcTime(TypeDecorator[datetime]):
    """A time stored as naive UTC (so every database compares them the same way), given
    aware or naive (taken as UTC). On SQLite written straight as the text SQLAlchemy's
    DATETIME writes, without a conversion to naive first."""

    impl = DateTime
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        if dialect.name == "sqlite":

            def as_text(value: datetime | None) -> str | None:
                if value is None:
                    return None
                if value.utcoffset():  # aware, not UTC
                    value = _naive_utc(value)
                # SQLAlchemy's SQLite DATETIME format: "YYYY-MM-DD HH:MM:SS.ffffff"
                return value.isoformat(" ", "microseconds")[:26]

            return as_text
        inner = DateTime().dialect_impl(dialect).bind_processor(dialect)

        def naive(value: datetime | None) -> Any:
            if value is None:
                return None
            value = _naive_utc(value) if value.tzinfo is not None else value
            return value if inner is None else inner(value)

        return naive


class ReportingProjection(Projection):
    name = NAME

    def __init__(self) -> None:
        #: Told of every committed batch (the report snapshots fold its events).
        self.followers: list[Callable[[int, int, list[RecordedEvent]], None]] = []
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, NAME)
        self.audit = Table(
            "reporting_audit",
            self.metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("event_id", String(64), nullable=False),
            Column("event_type", String(128), nullable=False, index=True),
            Column("aggregate_type", String(64), nullable=False),
            Column("aggregate_id", String(64), nullable=False),
            Column("actor", String(128), nullable=False, index=True),
            Column("source", String(128), nullable=False),
            Column("occurred_at", _UtcTime(), nullable=False),
            Column("recorded_at", _UtcTime(), nullable=False, index=True),
            Column("correlation_id", String(128), nullable=False, index=True),
            Column("causation_id", String(128), nullable=False),
            Column("payload", JsonDocument(), nullable=False),
            #: The project an event concerns, whichever aggregate it is on (an allocation
            #: on a pool, a risk, a baseline): a project's whole history is one lookup.
            Column("project_id", String(64), nullable=True),
            Index("ix_reporting_audit_aggregate", "aggregate_type", "aggregate_id", "position"),
            Index("ix_reporting_audit_project", "project_id", "position"),
        )

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        apply_project_event(conn, self.projects, event)
        e = event.envelope
        # The row straight from the envelope's fields (a model_dump copied the payload).
        self.insert_later(
            self.audit,
            {
                "position": event.position,
                "event_id": e.event_id,
                "event_type": e.event_type,
                "aggregate_type": e.aggregate_type,
                "aggregate_id": e.aggregate_id,
                "actor": e.actor,
                "source": e.source,
                "occurred_at": e.occurred_at,
                "recorded_at": e.recorded_at,
                "correlation_id": e.correlation_id,
                "causation_id": e.causation_id,
                "payload": e.payload,
                "project_id": _project_of(e.aggregate_type, e.aggregate_id, e.payload),
            },
        )

    def committed(self, first: int, last: int, events: list[RecordedEvent]) -> None:
        for follower in self.followers:
            follower(first, last, events)

    def audit_entries(self, conn: Connection, query: AuditQuery) -> list[AuditEntry]:
        a = self.audit.c
        statement = (
            select(self.audit)
            .where(a.position > query.after_position)
            .order_by(a.position)
            .limit(query.limit)
        )
        filters = {
            a.aggregate_type: query.aggregate_type,
            a.aggregate_id: query.aggregate_id,
            a.actor: query.actor,
            a.event_type: query.event_type,
            a.correlation_id: query.correlation_id,
            a.project_id: query.project_id,
        }
        for column, wanted in filters.items():
            if wanted is not None:
                statement = statement.where(column == wanted)
        if query.since is not None:
            statement = statement.where(a.recorded_at >= _naive_utc(query.since))
        if query.until is not None:
            statement = statement.where(a.recorded_at <= _naive_utc(query.until))
        if query.occurred_until is not None:
            statement = statement.where(a.occurred_at <= _naive_utc(query.occurred_until))
        rows = conn.execute(statement)
        return [
            AuditEntry.model_validate(
                {k: v for k, v in row._mapping.items() if k != "project_id"}
                | {
                    "occurred_at": row.occurred_at.replace(tzinfo=UTC),
                    "recorded_at": row.recorded_at.replace(tzinfo=UTC),
                }
            )
            for row in rows
        ]


def _project_of(aggregate_type: str, aggregate_id: str, payload: dict[str, Any]) -> str | None:
    if aggregate_type == PROJECT:
        return aggregate_id
    found = payload.get("project_id")
    return found if isinstance(found, str) else None


def _naive_utc(moment: datetime) -> datetime:
    """Times are stored as naive UTC so every database compares them the same way. A time
    whose UTC lies beyond years 1-9999 (intake refuses one now; an older log may hold one)
    is stored as the nearest representable instant, never stalling the projection."""
    if moment.utcoffset() == _ZERO:  # as read from the log: no conversion needed
        return moment.replace(tzinfo=None)
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return datetime.max if moment.year > 1 else datetime.min


_ZERO = timedelta(0)
