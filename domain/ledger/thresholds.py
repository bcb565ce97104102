"""Threshold crossings the ledger appends after each change, and the tie-outs that
prove a state's figures agree with each other."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from contracts import ledger as lg
from contracts.base import FrozenModel
from domain.ledger.capacity import CapacityState
from domain.ledger.periods import HUNDRED, ZERO
from domain.ledger.pools import PoolState

# --- thresholds -------------------------------------------------------------------------


def threshold_changes(
    raised: frozenset[int], thresholds: Iterable[int], consumed: Decimal, amount: Decimal
) -> tuple[list[int], list[int]]:
    """(newly crossed ascending, cleared descending): a threshold t is reached when
    consumed ≥ t% of amount (computed exactly, not on the rounded percentage)."""
    scaled = consumed * HUNDRED
    reached = {t for t in thresholds if scaled >= t * amount}
    if reached == raised:  # nearly every fold: nothing crossed, nothing cleared
        return [], []
    return sorted(reached - raised), sorted(raised - reached, reverse=True)


def pool_threshold_events(
    state: PoolState, projects: Iterable[str] | None = None
) -> list[FrozenModel]:
    """What the ledger service appends to the pool after a change: consumption thresholds
    crossed or cleared, then projects newly overspent or back within their allocation.
    `projects` limits the overspend check to the projects a change touched (default: all)."""
    crossed, cleared = threshold_changes(
        state.raised_thresholds, state.thresholds, state.consumed, state.amount
    )
    events: list[FrozenModel] = []
    if crossed or cleared:  # the figures (a division among them) only when announced
        figures = {
            "pool_id": state.pool_id,
            "consumed": state.consumed,
            "amount": state.amount,
            "consumption_percent": state.consumption_percent or ZERO,
            "actual": state.actual,
            "open_commitments": state.open_commitments,
            "currency": state.currency,
        }
        events += [lg.PoolThresholdCrossed(threshold_percent=t, **figures) for t in crossed]
        events += [lg.PoolThresholdCleared(threshold_percent=t, **figures) for t in cleared]
    candidates = set(state.actual_by_project) | state.overspent if projects is None else projects
    actual_by_project, allocations = state.actual_by_project, state.allocations
    for project_id in sorted(set(candidates)):
        actual = actual_by_project.get(project_id, ZERO)
        allocated = allocations.get(project_id, ZERO)
        over = actual > allocated
        if over == (project_id in state.overspent):
            continue
        kind = lg.ProjectOverspent if over else lg.ProjectOverspendCleared
        events.append(
            kind(
                pool_id=state.pool_id,
                project_id=project_id,
                actual=actual,
                allocated=allocated,
                currency=state.currency,
            )
        )
    return events


def is_over_allocated(demand: Decimal, capacity: Decimal, tolerance_percent: Decimal) -> bool:
    return demand * HUNDRED > capacity * (HUNDRED + tolerance_percent)


def capacity_threshold_events(
    state: CapacityState,
    tolerance_percent: Decimal = ZERO,
    periods: Iterable[str] | None = None,
) -> list[FrozenModel]:
    """Months of the role newly over-allocated beyond the tolerance, or back within it.
    `periods` limits the check to the months a change touched (default: every month)."""
    months = sorted(
        set(periods) if periods is not None else set(state.periods()) | state.over_allocated
    )
    events: list[FrozenModel] = []
    for period in months:
        demand, capacity = state.demand_in(period), state.net_capacity(period)
        over = is_over_allocated(demand, capacity, tolerance_percent)
        if over == (period in state.over_allocated):
            continue
        kind = lg.RoleOverAllocated if over else lg.RoleOverAllocationCleared
        events.append(
            kind(
                role=state.role,
                period=period,
                demand=demand,
                capacity=capacity,
                tolerance_percent=tolerance_percent,
                unit=state.unit,
            )
        )
    return events


# --- tie-outs ---------------------------------------------------------------------------


def pool_tie_out_problems(state: PoolState) -> list[str]:
    """Every running figure against the detail it sums; empty when everything ties out."""
    problems = []

    def check(what: str, total: Decimal, detail: Decimal) -> None:
        if total != detail:
            problems.append(f"{what}: {total} != sum of its detail {detail}")

    check("allocated", state.allocated, sum(state.allocations.values(), ZERO))
    check("actual", state.actual, sum(state.actual_cells.values(), ZERO))
    check("actual by project", state.actual, sum(state.actual_by_project.values(), ZERO))
    lines = state.commitments.values()
    check("committed", state.committed, sum((c.amount for c in lines), ZERO))
    check("open commitments", state.open_commitments, sum((c.open for c in lines), ZERO))
    negative = sorted(pid for pid, amount in state.allocations.items() if amount < 0)
    if negative:
        problems.append(f"negative allocations: {', '.join(negative)}")
    if state.unallocated < -state.over_commit_approved:
        problems.append(
            f"pool short by {-state.unallocated} beyond the approved {state.over_commit_approved}"
        )
    return problems


def capacity_tie_out_problems(state: CapacityState) -> list[str]:
    problems = []
    by_period: dict[str, Decimal] = defaultdict(Decimal)
    for (_, period), amount in state.demand.items():
        by_period[period] += amount
    for period in set(by_period) | set(state.demand_by_period):
        if by_period.get(period, ZERO) != state.demand_in(period):
            problems.append(f"demand in {period}: {state.demand_in(period)} != {by_period[period]}")
    if sum(state.hours.values(), ZERO) != state.hours_total:
        problems.append(f"hours: {state.hours_total} != sum of their detail")
    return problems
