"""Budget and capacity report figures, and the staffing plan, derived from states."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from contracts import ledger as lg
from domain.ledger.capacity import CapacityLine, CapacityState
from domain.ledger.periods import CENT, ZERO, percent
from domain.ledger.pools import PoolState
from domain.ledger.thresholds import is_over_allocated

# --- budget reports ---------------------------------------------------------------------


class Grouping(StrEnum):
    POOL = "pool"  # key (pool_id,)
    PROJECT = "project"  # key (project_id, currency)
    POOL_PROJECT = "pool_project"  # key (pool_id, project_id)
    CATEGORY = "category"  # key (category, currency)
    FISCAL_PERIOD = "fiscal_period"  # key (e.g. "FY2025-Q2", currency)


#: Groupings whose rows are whole pools, so that the pool amount belongs to them.
POOL_GROUPINGS = frozenset({Grouping.POOL, Grouping.CATEGORY, Grouping.FISCAL_PERIOD})


@dataclass(frozen=True)
class BudgetFigures:
    """One row of a budget report (see the module docstring for each definition)."""

    currency: str
    #: The pools' amount; None for rows by project.
    amount: Decimal | None
    allocated: Decimal
    committed: Decimal
    open_commitments: Decimal
    actual: Decimal
    forecast_at_completion: Decimal
    remaining: Decimal
    #: amount - allocated; None for rows by project.
    unallocated: Decimal | None
    burn_rate: Decimal | None
    months_with_actuals: int
    actual_by_period: Mapping[str, Decimal]
    committed_by_period: Mapping[str, Decimal]


@dataclass
class _Sums:
    currency: str
    amount: Decimal | None = None
    allocated: Decimal = ZERO
    committed: Decimal = ZERO
    open_commitments: Decimal = ZERO
    actual_by_period: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    committed_by_period: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def figures(self) -> BudgetFigures:
        actual = sum(self.actual_by_period.values(), ZERO)
        forecast = actual + self.open_commitments
        months = sum(1 for v in self.actual_by_period.values() if v)
        return BudgetFigures(
            currency=self.currency,
            amount=self.amount,
            allocated=self.allocated,
            committed=self.committed,
            open_commitments=self.open_commitments,
            actual=actual,
            forecast_at_completion=forecast,
            remaining=self.allocated - forecast,
            unallocated=None if self.amount is None else self.amount - self.allocated,
            burn_rate=(actual / months).quantize(CENT, rounding=ROUND_HALF_UP) if months else None,
            months_with_actuals=months,
            actual_by_period=dict(sorted(self.actual_by_period.items())),
            committed_by_period=dict(sorted(self.committed_by_period.items())),
        )


def _key(pool: PoolState, project_id: str, by: Grouping) -> tuple[str, ...]:
    match by:
        case Grouping.POOL:
            return (pool.pool_id,)
        case Grouping.PROJECT:
            return (project_id, pool.currency)
        case Grouping.POOL_PROJECT:
            return (pool.pool_id, project_id)
        case Grouping.CATEGORY:
            return (str(pool.category), pool.currency)
    return (pool.label, pool.currency)


def budget_report(
    pools: Iterable[PoolState], by: Grouping = Grouping.POOL
) -> dict[tuple[str, ...], BudgetFigures]:
    """Allocated, committed, actual, remaining, forecast at completion and burn rate per
    pool, project, pool and project, category or fiscal period (never adding currencies)."""
    sums: dict[tuple[str, ...], _Sums] = {}

    def row(key: tuple[str, ...], currency: str) -> _Sums:
        found = sums.get(key)  # not setdefault: that builds a row for every cell
        if found is None:
            found = sums[key] = _Sums(currency)
        return found

    for pool in pools:
        _add_pool(pool, by, row)
    return {key: sums[key].figures() for key in sorted(sums)}


def _add_pool(pool: PoolState, by: Grouping, row: Callable[[tuple[str, ...], str], _Sums]) -> None:
    rows: dict[str, _Sums] = {}  # the pool's row of each project, its key made once

    def project_row(project_id: str) -> _Sums:
        found = rows.get(project_id)
        if found is None:
            found = rows[project_id] = row(_key(pool, project_id, by), pool.currency)
        return found

    if by in POOL_GROUPINGS:
        total = row(_key(pool, "", by), pool.currency)
        total.amount = (total.amount or ZERO) + pool.amount
    for project_id, allocated in pool.allocations.items():
        project_row(project_id).allocated += allocated
    for line in pool.commitments.values():
        target = project_row(line.project_id)
        target.committed += line.amount
        target.open_commitments += line.open
        for period in line.periods:
            target.committed_by_period[period] += line.per_period
    for (project_id, period), actual in pool.actual_cells.items():
        project_row(project_id).actual_by_period[period] += actual


# --- capacity reports -------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityCell:
    """One role in one month."""

    role: str
    period: str
    unit: lg.CapacityUnit
    capacity: Decimal
    time_off: Decimal
    #: capacity - time off.
    net_capacity: Decimal
    demand: Decimal
    #: net capacity - demand (negative when over-allocated).
    available: Decimal
    #: demand / net capacity * 100; None when the net capacity is 0.
    utilisation_percent: Decimal | None
    over_allocated: bool
    demand_by_project: Mapping[str, Decimal]
    actual_hours: Decimal


def capacity_report(
    states: Iterable[CapacityState], tolerance_percent: Decimal = ZERO
) -> list[CapacityCell]:
    """Capacity against demand by role and month, sorted by role then month."""
    cells = []
    for state in sorted(states, key=lambda s: s.role):
        by_project: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for (project_id, period), amount in state.demand.items():
            by_project[period][project_id] = amount
        hours: dict[str, Decimal] = defaultdict(Decimal)
        for (_, period), worked in state.hours.items():
            hours[period] += worked
        # state.periods(), from the demand already gone through (not merged again)
        for period in sorted(set(state.capacity) | set(by_project) | set(hours)):
            line = state.capacity.get(period, CapacityLine(ZERO))
            demand = state.demand_in(period)
            cells.append(
                CapacityCell(
                    role=state.role,
                    period=period,
                    unit=state.unit,
                    capacity=line.amount,
                    time_off=line.time_off,
                    net_capacity=line.net,
                    demand=demand,
                    available=line.net - demand,
                    utilisation_percent=percent(demand, line.net),
                    over_allocated=is_over_allocated(demand, line.net, tolerance_percent),
                    demand_by_project=dict(sorted(by_project[period].items())),
                    actual_hours=hours.get(period, ZERO),
                )
            )
    return cells


def over_allocated_cells(
    states: Iterable[CapacityState], tolerance_percent: Decimal = ZERO
) -> list[CapacityCell]:
    return [c for c in capacity_report(states, tolerance_percent) if c.over_allocated]


@dataclass(frozen=True)
class Shortfall:
    role: str
    period: str
    needed: Decimal
    available: Decimal


@dataclass(frozen=True)
class Unstaffed:
    project_id: str
    shortfalls: tuple[Shortfall, ...]


@dataclass(frozen=True)
class StaffingPlan:
    #: In priority order.
    staffed: tuple[str, ...]
    unstaffed: tuple[Unstaffed, ...]
    #: Projects with demand that the priority order does not name (not staffed).
    unranked: tuple[str, ...]
    #: Net capacity left by (role, month) once the staffed projects are served.
    available: Mapping[tuple[str, str], Decimal]


def staffing_plan(states: Iterable[CapacityState], priority: Sequence[str]) -> StaffingPlan:
    """Fill capacity in priority order: a project is staffed when every role and month it
    needs still has the net capacity for it (all or nothing), and then takes that capacity;
    otherwise it cannot be staffed, and leaves the capacity to the projects after it."""
    states = list(states)
    available: dict[tuple[str, str], Decimal] = {}
    needs: dict[str, dict[tuple[str, str], Decimal]] = defaultdict(dict)
    for state in states:
        for period in state.periods():
            available[(state.role, period)] = state.net_capacity(period)
        for (project_id, period), amount in state.demand.items():
            needs[project_id][(state.role, period)] = amount
    staffed: list[str] = []
    unstaffed: list[Unstaffed] = []
    for project_id in dict.fromkeys(priority):
        wanted = needs.get(project_id, {})
        shortfalls = tuple(
            Shortfall(role, period, amount, available.get((role, period), ZERO))
            for (role, period), amount in sorted(wanted.items())
            if amount > available.get((role, period), ZERO)
        )
        if shortfalls:
            unstaffed.append(Unstaffed(project_id, shortfalls))
            continue
        for cell, amount in wanted.items():
            available[cell] = available.get(cell, ZERO) - amount
        staffed.append(project_id)
    return StaffingPlan(
        staffed=tuple(staffed),
        unstaffed=tuple(unstaffed),
        unranked=tuple(sorted(set(needs) - set(priority))),
        available=dict(sorted(available.items())),
    )
