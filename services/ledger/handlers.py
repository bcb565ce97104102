"""The ledger's decisions and queries. After each batch: the threshold events decided fact
by fact while it was applied (once per crossing); on request: budget and capacity reports."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import structlog
from pydantic import Field, TypeAdapter, ValidationError

from contracts.base import FrozenModel
from domain.ledger import (
    BudgetFigures,
    CapacityCell,
    Grouping,
    budget_report,
    capacity_report,
    staffing_plan,
)
from services.ledger.projection import LedgerProjection, PendingThreshold
from shared.decisions import append_decision
from shared.eventlog import ConcurrencyConflict, EventLog
from shared.service import answer, invalid_query

log = structlog.get_logger(__name__)


class ThresholdFlusher:
    """Appends the threshold events decided while batches were applied, in order, each
    after whatever its aggregate holds (a decision describes the facts it was made on, so
    a later fact landing first does not make it stale). One flush at a time: after every
    batch, and once at start (what a crash left decided but not appended)."""

    def __init__(self, event_log: EventLog, projection: LedgerProjection) -> None:
        self.event_log = event_log
        self.projection = projection
        self.lock = asyncio.Lock()

    async def flush(self) -> int:
        async with self.lock:
            done = 0
            for item in list(self.projection.pending.values()):
                await self._append(item)
                self.projection.pending.pop(item.event_id, None)
                done += 1
            return done

    async def _append(self, item: PendingThreshold) -> None:
        for attempt in range(10):
            try:
                await append_decision(
                    self.event_log,
                    item.aggregate,
                    item.event,
                    item.identity,
                    item.cause,
                    actor="ledger",
                    source="ledger",
                )
                break
            except ConcurrencyConflict:
                # A command landed on the aggregate in between: append after it.
                if attempt == 9:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        log.info(
            "threshold.appended", threshold=type(item.event).__name__, aggregate=item.aggregate[1]
        )

    async def start(self) -> None:
        await self.flush()

    async def stop(self) -> None:
        return None


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
