"""Reporting's queries: parse, load (from the projection or the log), reply.

The report queries never answer with a stack trace: a question that cannot be answered
gets `{"error": ..., "code": ...}` (`invalid_query`, `bad_time`, `not_found`, `too_large`,
`conflict`, `internal`)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from pydantic import Field, ValidationError, model_validator

from contracts.base import FrozenModel, Identifier, Name, Rationale, UtcTime
from contracts.queries import (
    AuditAnswer,
    AuditEntry,
    AuditQuery,
    ForecastQuery,
    LessonEntry,
    LessonsAnswer,
    LessonsQuery,
)
from contracts.reports import AGGREGATE as REPORT
from contracts.reports import PORTFOLIO_REPORTS, ChainHead, PortfolioReportPublished
from domain.forecast import simulate
from services.reporting import forecasting, improvement, timetravel
from services.reporting.facts import Cut, UnknownProject
from services.reporting.projection import ReportingProjection
from services.reporting.snapshots import SnapshotStore
from shared.decisions import append_decision
from shared.eventlog import ConcurrencyConflict, EventLog
from shared.service import ServiceRuntime, answer, invalid_query

log = structlog.get_logger(__name__)


async def audit(runtime: ServiceRuntime, projection: ReportingProjection, body: bytes) -> bytes:
    try:
        query = AuditQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        return answer(invalid_query("audit", error))
    entries = await runtime.db.read(projection.audit_entries, query)
    page = fit_in_one_message(entries)
    more = len(page) < len(entries) or len(entries) == query.limit
    return answer(
        AuditAnswer(entries=tuple(page), next_after_position=page[-1].position if more else None)
    )


def fit_in_one_message(entries: list[AuditEntry], budget: int = 900_000) -> list[AuditEntry]:
    """As many entries as fit in one NATS message (1 MiB by default), at least one."""
    size = 0
    for count, entry in enumerate(entries):
        size += len(entry.model_dump_json())
        if count and size > budget:
            return entries[:count]
    return entries


# --- lessons learned ----------------------------------------------------------------------


async def lessons(
    runtime: ServiceRuntime, body: bytes, snapshots: SnapshotStore | None = None
) -> bytes:
    """`portfolio.query.reporting.lessons`: the lessons learned matching the query, the
    latest `limit` of them, folded from the log as the report is."""
    try:
        query = LessonsQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        refused = invalid_query("lessons", error)
        return _error(refused.error, "invalid_query", refused.details)
    try:
        folded = await timetravel.fold(runtime.log, Cut(), snapshots=snapshots)
    except Exception as error:  # the caller gets an answer, never a trace
        log.exception("lessons.failed", query=query.model_dump(mode="json"))
        return _error(f"the lessons query failed: {type(error).__name__}: {error}", "internal")
    if query.project_id is not None and query.project_id not in folded.projects:
        return _error(f"unknown project {query.project_id}", "not_found")
    words = (query.search or "").split()
    found = improvement.find_lessons(folded, words, query.project_id, query.category)
    entries = [LessonEntry.model_validate(x) for x in found[-query.limit :]]
    return timetravel.fit(
        LessonsAnswer(lessons=tuple(entries), total=len(found)).model_dump(mode="json"),
        message_limit(runtime),
    )


# --- the forecast -------------------------------------------------------------------------


async def forecast(
    runtime: ServiceRuntime,
    body: bytes,
    now: datetime | None = None,
    snapshots: SnapshotStore | None = None,
) -> bytes:
    """`portfolio.query.reporting.forecast`: the report's fold, its forecast inputs, the
    simulation (in a thread: the service keeps answering meanwhile)."""
    try:
        query = ForecastQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        refused = invalid_query("forecast", error)
        return _error(refused.error, "invalid_query", refused.details)
    now = now or datetime.now(UTC)
    try:
        cut = Cut(as_of=query.as_of)
        timetravel.check_cut(cut, await timetravel.first_recorded_at(runtime.log), now)
        folded = await timetravel.fold(runtime.log, cut, snapshots=snapshots)
        inputs = forecasting.inputs(
            folded, query.project_id, query.programme_id, query.include_pipeline
        )
        draws = query.iterations * max(1, len(inputs.projects) + len(inputs.risks))
        if draws > forecasting.MAX_DRAWS:
            return _error(
                f"{query.iterations:,} iterations over {len(inputs.projects):,} projects and "
                f"{len(inputs.risks):,} risks is more than one forecast draws "
                f"({forecasting.MAX_DRAWS:,}): ask for fewer iterations or one programme",
                "too_large",
            )
        result = await asyncio.to_thread(
            simulate,
            inputs.projects,
            inputs.risks,
            inputs.budgets,
            iterations=query.iterations,
            seed=query.seed,
        )
    except timetravel.BadCut as error:
        return _error(str(error), "bad_time")
    except forecasting.ScopeError as error:
        return _error(str(error), "not_found")
    except Exception as error:  # the caller gets an answer, never a trace
        log.exception("forecast.failed", query=query.model_dump(mode="json"))
        return _error(f"the forecast failed: {type(error).__name__}: {error}", "internal")
    found = forecasting.answer(
        folded,
        inputs,
        result,
        query.project_id,
        query.programme_id,
        query.include_pipeline,
        now,
    )
    return timetravel.fit(found, message_limit(runtime))


# --- reports ------------------------------------------------------------------------------


class ReportQuery(FrozenModel):
    """`portfolio.query.reporting.report`: the portfolio report, a project's scorecard, or
    what changed between two points (`diff_from`, `diff_to`)."""

    as_of: UtcTime | None = Field(default=None, description="Recorded time.")
    occurred_as_of: UtcTime | None = Field(default=None, description="Business time.")
    project_id: Identifier | None = None
    diff_from: UtcTime | None = None
    diff_to: UtcTime | None = None
    #: Whether the diff's points are recorded or business times.
    diff_by: Literal["recorded", "occurred"] = "recorded"

    @model_validator(mode="after")
    def _one_question(self) -> ReportQuery:
        diffing = self.diff_from is not None or self.diff_to is not None
        if diffing and (self.diff_from is None or self.diff_to is None):
            raise ValueError("a diff needs both diff_from and diff_to")
        if diffing and (self.as_of or self.occurred_as_of or self.project_id):
            raise ValueError("a diff takes its two points only (no as_of or project_id)")
        return self

    @property
    def cut(self) -> Cut:
        return Cut(as_of=self.as_of, occurred_as_of=self.occurred_as_of)


class PublishRequest(FrozenModel):
    """`portfolio.control.reporting.publish`: put the current report on the record."""

    rationale: Rationale
    actor: Name = "anonymous"
    source: Name = "unknown"


def _error(message: str, code: str, details: tuple[dict[str, Any], ...] = ()) -> bytes:
    return answer(_Error(error=message, code=code, details=details))


class _Error(FrozenModel):
    error: str
    code: str
    details: tuple[dict[str, Any], ...] = ()


def message_limit(runtime: ServiceRuntime) -> int:
    """What an answer may take of one NATS message."""
    return int(runtime.nc.max_payload) - timetravel.MESSAGE_HEADROOM


async def report(
    runtime: ServiceRuntime,
    body: bytes,
    now: datetime | None = None,
    snapshots: SnapshotStore | None = None,
) -> bytes:
    try:
        query = ReportQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        refused = invalid_query("report", error)
        return _error(refused.error, "invalid_query", refused.details)
    now = now or datetime.now(UTC)
    try:
        result = await answer_report(runtime.log, query, now, snapshots)
    except timetravel.BadCut as error:
        return _error(str(error), "bad_time")
    except UnknownProject as error:
        at = f" as of {query.as_of.isoformat()}" if query.as_of else ""
        return _error(f"unknown project {error.args[0]}{at}", "not_found")
    except Exception as error:  # the caller gets an answer, never a trace
        log.exception("report.failed", query=query.model_dump(mode="json"))
        return _error(f"the report failed: {type(error).__name__}: {error}", "internal")
    return timetravel.fit(result, message_limit(runtime))


async def answer_report(
    event_log: EventLog,
    query: ReportQuery,
    now: datetime,
    snapshots: SnapshotStore | None = None,
) -> dict[str, Any]:
    if query.diff_from is not None and query.diff_to is not None:
        field = "as_of" if query.diff_by == "recorded" else "occurred_as_of"
        return await timetravel.diff(
            event_log,
            Cut(**{field: query.diff_from}),
            Cut(**{field: query.diff_to}),
            now,
            snapshots,
        )
    if query.project_id is not None:
        return await timetravel.scorecard(event_log, query.cut, query.project_id, now)
    _, found = await timetravel.portfolio_report(event_log, query.cut, now, snapshots)
    return found


async def publish(
    runtime: ServiceRuntime,
    body: bytes,
    *,
    scheduled: bool = False,
    now: datetime | None = None,
    snapshots: SnapshotStore | None = None,
) -> bytes:
    """Append `PortfolioReportPublished` with the current report's summary; answer the
    appended event and the report as published (its changes since the last publication)."""
    try:
        request = PublishRequest.model_validate_json(body or b"{}")
    except ValidationError as error:
        refused = invalid_query("publish", error)
        return _error(refused.error, "invalid_query", refused.details)
    now = now or datetime.now(UTC)
    try:
        found = await publish_report(
            runtime.log,
            request,
            now,
            message_limit(runtime),
            scheduled=scheduled,
            snapshots=snapshots,
        )
    except timetravel.BadCut as error:
        return _error(str(error), "bad_time")
    except ConcurrencyConflict:
        return _error("another report was published at the same moment: try again", "conflict")
    except Exception as error:  # the caller gets an answer, never a trace
        log.exception("report.publish_failed")
        return _error(f"publishing failed: {type(error).__name__}: {error}", "internal")
    if found is None:
        return _error("the log is empty: there is nothing to report", "empty")
    return timetravel.fit(found, message_limit(runtime))


async def publish_report(
    event_log: EventLog,
    request: PublishRequest,
    now: datetime,
    limit: int,
    *,
    scheduled: bool = False,
    skip_unchanged: bool = False,
    snapshots: SnapshotStore | None = None,
) -> dict[str, Any] | None:
    """The publication itself; None when there is nothing (new) to publish."""
    folded, full = await timetravel.portfolio_report(event_log, Cut(), now, snapshots)
    if folded.content_position == 0:
        return None
    last = folded.published
    if skip_unchanged and last is not None and last.content_position == folded.content_position:
        return None
    identity = f"{folded.content_position}/{scheduled}/{request.actor}/{request.rationale}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    event = PortfolioReportPublished(
        report_id=f"R-{folded.content_position}-{digest}",
        position=folded.position,
        content_position=folded.content_position,
        generated_at=now,
        rationale=request.rationale,
        scheduled=scheduled,
        summary=folded.summary(),
        # What stakeholders are told pins the history it was computed from.
        chain_head=ChainHead(position=folded.chain_position, hash=folded.chain_head)
        if folded.chain_position == folded.position
        else None,
    )
    size = len(event.model_dump_json())
    if size > limit:
        raise timetravel.BadCut(
            f"the report's summary is {size} bytes, more than one event may hold ({limit})"
        )
    appended = await append_decision(
        event_log,
        (REPORT, PORTFOLIO_REPORTS),
        event,
        identity,
        None,
        actor=request.actor,
        source=request.source,
        # Decided on the publications folded: another one since is a conflict, not a race.
        expected_position=folded.published_position,
    )
    log.info("report.published", position=appended.position, report_id=event.report_id)
    return {"appended": appended.model_dump(mode="json"), "report": full}
