"""Read-side queries and their answers (`portfolio.query.<service>.<name>`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from contracts.base import FrozenModel, Identifier, Name, UtcTime

#: Answers travel as one NATS message (1 MiB by default): long lists come in pages.
PAGE_SIZE = 500


class InboxStatus(FrozenModel):
    """Intake's inbox consumer: figures from the server (None when it did not answer) and
    the loop's own. `running` false makes intake read `degraded`."""

    running: bool
    #: In the inbox, not delivered yet.
    pending: int | None
    #: Delivered, neither answered nor given up yet.
    waiting_for_ack: int | None
    #: Delivered more than once (not answered the first time).
    redelivered: int | None
    answered_since_start: int
    #: Messages given up after their deliveries ran out (kept in rejections).
    dead_letters_since_start: int
    last_error: str | None
    last_error_at: datetime | None


class ServiceStatus(FrozenModel):
    service: str
    #: starting, replaying, running, stalled, stopped; `degraded` when a part of the service that
    #: answers others (intake's inbox loop) is not running.
    state: str
    position: int
    log_position: int
    lag: int
    applied_since_start: int
    rebuilds_since_start: int
    skipped_events: int
    last_error: str | None
    started_at: datetime
    pid: int
    #: Intake only.
    inbox: InboxStatus | None = None
    #: Where the service serves its Prometheus metrics (None: not served).
    metrics_url: str | None = None
    #: The service's Prometheus samples (histogram buckets left out), e.g.
    #: `portfolio_intake_commands_total{outcome="accepted",via="request"}`: the same figures
    #: `/metrics` serves, which `portfolio status` prints.
    metrics: dict[str, float] = Field(default_factory=dict)


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
    #: Every event concerning the project, on whichever aggregate (pools, risks, baselines).
    project_id: str | None = None
    since: UtcTime | None = None
    #: Recorded at or before: the trail as it stood then (`portfolio audit --as-of`).
    until: UtcTime | None = None
    #: Facts whose business time is at or before this, even if recorded later.
    occurred_until: UtcTime | None = None
    after_position: int = Field(default=0, ge=0, description="Page after this position.")
    limit: int = Field(default=PAGE_SIZE, ge=1, le=PAGE_SIZE)


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
    next_after_position: int | None = Field(
        default=None, description="Ask again with this to get the next page; None at the end."
    )


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


class ProjectsQuery(FrozenModel):
    after_project_id: str | None = None
    limit: int = Field(default=PAGE_SIZE, ge=1, le=PAGE_SIZE)


class ProjectsAnswer(FrozenModel):
    projects: tuple[ProjectSummary, ...]
    next_after_project_id: str | None = None


class QueryError(FrozenModel):
    error: str
    details: tuple[dict[str, Any], ...] = ()


class LessonsQuery(FrozenModel):
    """`portfolio.query.reporting.lessons`: lessons learned, filters combined with AND.
    `search`: words that must all appear (any case) in the lesson's title, description,
    recommendation or category, or the project's id, name or category."""

    search: str | None = Field(default=None, max_length=200)
    project_id: Identifier | None = None
    category: Name | None = None
    limit: int = Field(default=PAGE_SIZE, ge=1, le=PAGE_SIZE)


class LessonEntry(FrozenModel):
    project_id: str
    project_name: str
    project_category: str
    project_status: str | None
    lesson_id: str
    title: str
    description: str
    recommendation: str
    category: str
    actor: str
    position: int
    recorded_at: datetime


class LessonsAnswer(FrozenModel):
    lessons: tuple[LessonEntry, ...]
    #: How many lessons match (the answer holds at most `limit`, the latest).
    total: int


class ForecastQuery(FrozenModel):
    """`portfolio.query.reporting.forecast`: the seeded Monte Carlo forecast of the
    committed portfolio (or one project, or one programme). The same seed, iterations and
    log position give the same answer."""

    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    iterations: int = Field(default=10_000, ge=100, le=200_000)
    project_id: Identifier | None = None
    programme_id: Identifier | None = None
    #: Also proposed and under-review projects (by default: approved, in progress, on hold).
    include_pipeline: bool = False
    as_of: UtcTime | None = Field(default=None, description="Recorded time.")

    @model_validator(mode="after")
    def _one_scope(self) -> ForecastQuery:
        if self.project_id is not None and self.programme_id is not None:
            raise ValueError("a forecast takes a project or a programme, not both")
        return self
