"""Read-side queries and their answers (`portfolio.query.<service>.<name>`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field

from contracts.base import FrozenModel


class ServiceStatus(FrozenModel):
    service: str
    state: str
    position: int
    log_position: int
    lag: int
    applied_since_start: int
    skipped_events: int
    last_error: str | None
    started_at: datetime
    pid: int


class ReplayStarted(FrozenModel):
    service: str
    target_position: int


class AuditQuery(FrozenModel):
    """Filters of `portfolio audit`; all optional and combined with AND."""

    aggregate_type: str | None = None
    aggregate_id: str | None = None
    actor: str | None = None
    event_type: str | None = None
    correlation_id: str | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    limit: int = Field(default=1000, ge=1, le=100_000)


class AuditEntry(FrozenModel):
    position: int
    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    actor: str
    source: str
    occurred_at: datetime
    recorded_at: datetime
    correlation_id: str
    causation_id: str
    payload: dict[str, Any]


class AuditAnswer(FrozenModel):
    entries: tuple[AuditEntry, ...]


class ProjectSummary(FrozenModel):
    project_id: str
    name: str
    sponsor: str
    category: str
    status: str
    capex: str
    opex: str
    currency: str
    planned_start: str
    planned_end: str
    mandatory: bool
    version: int
    last_position: int


class ProjectsAnswer(FrozenModel):
    projects: tuple[ProjectSummary, ...]


class QueryError(FrozenModel):
    error: str
    details: tuple[dict[str, Any], ...] = ()
