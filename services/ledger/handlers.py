"""The ledger's decisions and queries. After each batch: the thresholds of every pool and
role it touched (appended once per crossing); on request: budget and capacity reports."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import structlog
from pydantic import Field, TypeAdapter, ValidationError

from contracts import ledger as lg
from contracts.base import FrozenModel, RecordedEvent
from domain.ledger import (
    BudgetFigures,
    CapacityCell,
    Grouping,
    budget_report,
    capacity_report,
    capacity_threshold_events,
    pool_threshold_events,
    staffing_plan,
)
from services.ledger.projection import LedgerProjection
from shared.decisions import append_decision
from shared.eventlog import ConcurrencyConflict, EventLog
from shared.service import answer, invalid_query

log = structlog.get_logger(__name__)


async def check_thresholds(
    event_log: EventLog, projection: LedgerProjection, tolerance_percent: Decimal
) -> int:
    """Append the threshold events the latest changes call for; each crossing once, because
    the appended events fold back into the state they were computed from."""
    touched, projection.touched = projection.touched, {}
    parts, projection.touched_parts = projection.touched_parts, {}
    appended = 0
    try:
        for key, cause in sorted(touched.items()):
            appended += await _check(
                event_log, projection, tolerance_percent, key, cause, parts.get(key, set())
            )
    except Exception:
        # Checked again after the next batch rather than forgotten.
        for key, cause in touched.items():
            projection.touched.setdefault(key, cause)
            projection.touched_parts.setdefault(key, set()).update(parts.get(key, set()))
        raise
    return appended


async def _check(
    event_log: EventLog,
    projection: LedgerProjection,
    tolerance_percent: Decimal,
    key: tuple[str, str],
    cause: RecordedEvent,
    parts: set[str],
) -> int:
    """A pool's consumption, and the overspend of the projects the changes named; a role's
    allocation in the months they named (a capacity change moves no other month)."""
    aggregate_type, aggregate_id = key
    appended = 0
    if aggregate_type == lg.POOL:
        pool = projection.pools[aggregate_id]
        events = pool_threshold_events(pool, parts | pool.overspent)
    else:
        events = capacity_threshold_events(projection.roles[aggregate_id], tolerance_percent, parts)
    position = projection.last_position[(aggregate_type, aggregate_id)]
    expected = position
    for index, event in enumerate(events):
        try:
            landed = await append_decision(
                event_log,
                (aggregate_type, aggregate_id),
                event,
                f"{aggregate_type}/{aggregate_id}/{position}/{index}",
                cause,
                actor="ledger",
                source="ledger",
                expected_position=expected,
            )
        except ConcurrencyConflict:
            # Decided on a state that has moved on: the newer event is checked when it
            # lands, against the state it leaves.
            break
        expected = landed.position
        appended += 1
        log.info("threshold.appended", threshold=type(event).__name__, aggregate=aggregate_id)
    return appended


class BudgetQuery(FrozenModel):
    by: Grouping = Grouping.POOL


class CapacityQuery(FrozenModel):
    over_allocated_only: bool = False
    tolerance_percent: Decimal = Field(default=Decimal(0), ge=0, le=100)


class StaffingQuery(FrozenModel):
    """Projects in priority order (e.g. the ranking); who can be staffed, who cannot."""

    priority: tuple[str, ...]


FIGURES: TypeAdapter[Any] = TypeAdapter(dict[str, BudgetFigures])
CELLS: TypeAdapter[Any] = TypeAdapter(list[CapacityCell])


def _parse(model: type[FrozenModel], body: bytes) -> FrozenModel | bytes:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as error:
        return answer(invalid_query(model.__name__, error))


def budget(projection: LedgerProjection, body: bytes) -> bytes:
    query = _parse(BudgetQuery, body)
    if isinstance(query, bytes):
        return query
    assert isinstance(query, BudgetQuery)
    rows = budget_report(projection.pools.values(), query.by)
    keyed = {"/".join(key): figures for key, figures in sorted(rows.items())}
    return FIGURES.dump_json(keyed)


def capacity(projection: LedgerProjection, body: bytes) -> bytes:
    query = _parse(CapacityQuery, body)
    if isinstance(query, bytes):
        return query
    assert isinstance(query, CapacityQuery)
    cells = capacity_report(projection.roles.values(), query.tolerance_percent)
    if query.over_allocated_only:
        cells = [c for c in cells if c.over_allocated]
    return CELLS.dump_json(cells)


def staffing(projection: LedgerProjection, body: bytes) -> bytes:
    query = _parse(StaffingQuery, body)
    if isinstance(query, bytes):
        return query
    assert isinstance(query, StaffingQuery)
    plan = staffing_plan(projection.roles.values(), query.priority)
    result: dict[str, Any] = {
        "staffed": plan.staffed,
        "unstaffed": [TypeAdapter(type(u)).dump_python(u, mode="json") for u in plan.unstaffed],
        "unranked": plan.unranked,
        "available": {f"{r}/{m}": str(v) for (r, m), v in sorted(plan.available.items())},
    }
    return TypeAdapter(dict[str, Any]).dump_json(result)
