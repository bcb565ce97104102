"""A summary row per project, kept by every service that needs to know the projects.

Each service owns its copy (its own table, built from the log by its own projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.sql import Insert, Select, Update

from contracts import projects as p
from contracts.base import RecordedEvent
from contracts.queries import ProjectsAnswer, ProjectsQuery, ProjectSummary
from contracts.registry import payload_of
from shared.projection import CannotApply, Projection


def projects_table(metadata: MetaData, service: str) -> Table:
    return Table(
        f"{service}_projects",
        metadata,
        Column("project_id", String(64), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("sponsor", String(128), nullable=False),
        Column("category", String(128), nullable=False),
        Column("status", String(32), nullable=False, index=True),
        Column("capex", String(32), nullable=False),
        Column("opex", String(32), nullable=False),
        Column("currency", String(3), nullable=False),
        Column("planned_start", String(10), nullable=False),
        Column("planned_end", String(10), nullable=False),
        Column("mandatory", Boolean, nullable=False),
        Column("version", Integer, nullable=False),
        Column("last_position", Integer, nullable=False),
    )


@dataclass(frozen=True)
class _Statements:
    """Built once per table: building a statement costs more than running it."""

    exists: Select[Any]
    current: Select[Any]
    insert: Insert
    update: Update


_STATEMENTS: dict[Table, _Statements] = {}


def _statements(table: Table) -> _Statements:
    found = _STATEMENTS.get(table)
    if found is None:
        key = table.c.project_id == bindparam("key")
        found = _STATEMENTS[table] = _Statements(
            exists=select(table.c.project_id).where(key),
            current=select(table.c.status, table.c.version).where(key),
            insert=table.insert(),
            update=update(table).where(key),
        )
    return found


def proposed_row(payload: p.ProjectProposed, position: int) -> dict[str, object]:
    """A proposed project's summary row (the fold below and intake's batched insert)."""
    return {
        "project_id": payload.project_id,
        "name": payload.name,
        "sponsor": payload.sponsor,
        "category": payload.category,
        "status": p.ProjectStatus.PROPOSED.value,
        "capex": str(payload.capex),
        "opex": str(payload.opex),
        "currency": payload.currency,
        "planned_start": payload.planned_start.isoformat(),
        "planned_end": payload.planned_end.isoformat(),
        "mandatory": payload.mandatory,
        "version": 1,
        "last_position": position,
    }


def apply_project_event(conn: Connection, table: Table, event: RecordedEvent) -> None:
    """Fold one project event into the summary table; other aggregates are ignored.

    Statements take their values as parameters, so each is compiled once and cached."""
    envelope = event.envelope
    if envelope.aggregate_type != p.AGGREGATE:
        return
    payload = payload_of(envelope)
    statements = _statements(table)
    if isinstance(payload, p.ProjectProposed):
        existing = conn.execute(statements.exists, {"key": payload.project_id})
        if existing.first() is not None:
            raise CannotApply(f"project {envelope.aggregate_id} was already proposed")
        conn.execute(statements.insert, proposed_row(payload, event.position))
        return
    row = conn.execute(statements.current, {"key": envelope.aggregate_id}).first()
    if row is None:
        raise CannotApply(f"{envelope.event_type} for unknown project {envelope.aggregate_id}")
    values: dict[str, object] = {
        "version": row.version + 1,
        "last_position": event.position,
        "status": str(p.status_after(payload, p.ProjectStatus(row.status))),
    }
    if isinstance(payload, p.ProjectEstimateUpdated):
        values |= {
            "capex": str(payload.capex),
            "opex": str(payload.opex),
            "planned_start": payload.planned_start.isoformat(),
            "planned_end": payload.planned_end.isoformat(),
        }
    conn.execute(statements.update, {"key": envelope.aggregate_id, **values})


def list_projects(conn: Connection, table: Table, query: ProjectsQuery) -> ProjectsAnswer:
    statement = select(table).order_by(table.c.project_id).limit(query.limit)
    if query.after_project_id is not None:
        statement = statement.where(table.c.project_id > query.after_project_id)
    found = [ProjectSummary.model_validate(dict(row._mapping)) for row in conn.execute(statement)]
    full_page = len(found) == query.limit
    return ProjectsAnswer(
        projects=tuple(found), next_after_project_id=found[-1].project_id if full_page else None
    )


class ProjectsProjection(Projection):
    """The projection a service starts with before its own features add tables."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, name)

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        apply_project_event(conn, self.projects, event)
