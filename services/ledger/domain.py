"""The resource ledger, pure: budget pools and role capacity as state machines
(`decide(command, state, now, refs) -> events`, `evolve(state, event) -> state`, the same
signatures as services.intake.domain), the threshold checks the ledger service runs after
each change, and the report figures. No I/O and no clock.

Definitions (every figure is Decimal, in the pool's currency):

- **allocated**: allocations - releases ± transfers, per project and for the pool.
- **unallocated** = pool amount - allocated. Invariant: never below -(approved over-commit).
- **committed**: purchase orders and contracts, plus each recurring cost line
  (amount per period * its months).
- **open commitments**: Σ over commitments of max(0, its amount - the actual costs that
  named it in `commitment_ref`). Actuals that name no commitment settle none.
- **consumed** = actual + open commitments; **consumption %** = consumed / amount * 100.
  With no actual naming a commitment this is (committed + actual) / amount.
- **forecast at completion** = actual + open commitments: what will have been spent once
  everything already committed is invoiced. **remaining** = allocated - forecast.
- **burn rate** = actual / the number of months that have an actual cost.
- A project is **overspent** in a pool when its actual there exceeds its allocation there.
- A role is **over-allocated** in a month when demand > (capacity - time off) * (1 +
  tolerance / 100); **utilisation %** = demand / (capacity - time off) * 100.

Thresholds are raised once per crossing: a pool or capacity state also folds the threshold
events already in its history (which thresholds are raised), and `pool_threshold_events` /
`capacity_threshold_events` return only the changes against that: a crossing for each
figure now at or beyond a threshold that is not raised, a clear for each raised one the
figure has fallen back from. Folding those events makes the next check return nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar

from contracts import ledger as lg
from contracts import projects as p
from contracts.base import AggregateKey, Command, ErrorCode, FieldError, FrozenModel
from shared.rejected import Rejected

Refs = Mapping[AggregateKey, Any]
K = TypeVar("K")
S = TypeVar("S")
V = TypeVar("V")
Status = p.ProjectStatus
ZERO = Decimal(0)
CENT = Decimal("0.01")
HUNDRED = Decimal(100)

#: A project in these statuses receives no new money, commitment or demand.
NOT_FUNDABLE = p.TERMINAL_STATUSES
#: A project in these statuses has no costs or hours to record (it never ran).
NO_COSTS = frozenset({Status.REJECTED})


# --- months and fiscal periods ----------------------------------------------------------


def month_index(period: str) -> int:
    year, month = period.split("-")
    return int(year) * 12 + int(month) - 1


def period_at(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_between(first: str, last: str) -> tuple[str, ...]:
    """Every month from `first` to `last`, both included."""
    return tuple(period_at(i) for i in range(month_index(first), month_index(last) + 1))


@lru_cache(maxsize=1024)
def fiscal_months(fiscal_year: int, quarter: int | None, start_month: int = 1) -> tuple[str, ...]:
    """The months of fiscal year `fiscal_year` (or of one quarter of it). Fiscal year N
    starts in month `start_month` of calendar year N."""
    start = fiscal_year * 12 + start_month - 1 + (3 * (quarter - 1) if quarter else 0)
    return tuple(period_at(i) for i in range(start, start + (3 if quarter else 12)))


def fiscal_label(fiscal_year: int, quarter: int | None) -> str:
    return f"FY{fiscal_year}" + (f"-Q{quarter}" if quarter else "")


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """part / whole * 100 to 2 places; None when whole is 0 (undefined, not 0 or 100)."""
    if whole == 0:
        return None
    return (part * HUNDRED / whole).quantize(CENT, rounding=ROUND_HALF_UP)


def _with(state: S, **changes: Any) -> S:
    """A copy of a frozen dataclass with some fields changed: `dataclasses.replace` without
    running `__init__` again, which dominated folding a pool's invoices one by one."""
    changed: S = object.__new__(type(state))
    changed.__dict__.update(state.__dict__, **changes)
    return changed


# --- immutable collections that grow cheaply -------------------------------------------
#
# A pool folds one event per invoice: copying a set of every invoice reference on each
# one would make folding a pool quadratic. These keep their items in levels of doubling
# size (a binary counter), so that an addition copies O(log n) items amortised and the
# earlier state stays valid.


@dataclass(frozen=True, eq=False)
class RefSet(AbstractSet[str]):
    """An immutable set of references (invoice, purchase order, timesheet entry ids)."""

    levels: tuple[frozenset[str], ...] = ()

    def __contains__(self, item: object) -> bool:
        return any(item in level for level in self.levels)

    def __iter__(self) -> Iterator[str]:
        for level in self.levels:
            yield from level

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels)

    def add(self, item: str) -> RefSet:
        if item in self:
            return self
        carry, levels = frozenset((item,)), list(self.levels)
        for index, level in enumerate(levels):
            if not level:
                levels[index] = carry
                return RefSet(tuple(levels))
            carry, levels[index] = level | carry, frozenset()
        return RefSet((*levels, carry))


@dataclass(frozen=True, eq=False)
class LayeredMap(Mapping[K, V]):
    """An immutable mapping; a later value for a key replaces the earlier one."""

    #: Newest first: a lookup stops at the first level holding the key.
    levels: tuple[Mapping[K, V], ...] = ()

    def __getitem__(self, key: K) -> V:
        for level in self.levels:
            if key in level:
                return level[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return any(key in level for level in self.levels)

    def _merged(self) -> dict[K, V]:
        merged: dict[K, V] = {}
        for level in reversed(self.levels):
            merged.update(level)
        return merged

    def __iter__(self) -> Iterator[K]:
        return iter(self._merged())

    def __len__(self) -> int:
        return len(self._merged())

    def set(self, key: K, value: V) -> LayeredMap[K, V]:
        carry: Mapping[K, V] = {key: value}
        levels = list(self.levels)
        for index, level in enumerate(levels):
            if not level:
                levels[index] = carry
                return LayeredMap(tuple(levels))
            carry, levels[index] = {**level, **carry}, {}
        return LayeredMap((*levels, carry))


# --- refusals ---------------------------------------------------------------------------


def _refuse(code: ErrorCode, message: str, field_name: str, value: Any = None) -> Rejected:
    return Rejected(code, message, (FieldError(field=field_name, message=message, input=value),))


def _project_status(refs: Refs, project_id: str, field_name: str) -> Status:
    project = refs.get((p.AGGREGATE, project_id))
    if project is None:
        raise _refuse(ErrorCode.NOT_FOUND, f"unknown project {project_id}", field_name, project_id)
    status: Status = project.status
    return status


def _fundable(refs: Refs, project_id: str, field_name: str) -> None:
    """The project exists and may still receive budget, commitments and demand."""
    status = _project_status(refs, project_id, field_name)
    if status in NOT_FUNDABLE:
        raise _refuse(
            ErrorCode.ILLEGAL_TRANSITION,
            f"project {project_id} is {status}: it takes no new budget, commitment or demand",
            field_name,
            project_id,
        )


def _may_record_costs(refs: Refs, project_id: str, field_name: str) -> None:
    """The project exists and ran (late invoices and hours of a cancelled or completed
    project are still facts to record)."""
    status = _project_status(refs, project_id, field_name)
    if status in NO_COSTS:
        raise _refuse(
            ErrorCode.ILLEGAL_TRANSITION,
            f"project {project_id} is {status}: it has no costs or hours to record",
            field_name,
            project_id,
        )


# --- the budget pool aggregate ----------------------------------------------------------


@dataclass(frozen=True)
class CommitmentLine:
    """A purchase order or contract (one month), or a recurring cost (several months)."""

    project_id: str
    amount: Decimal
    periods: tuple[str, ...]
    per_period: Decimal
    asset_id: str | None = None
    #: Actual costs that named this commitment in `commitment_ref`.
    settled: Decimal = ZERO

    @property
    def open(self) -> Decimal:
        return max(ZERO, self.amount - self.settled)


@dataclass(frozen=True)
class PoolState:
    pool_id: str
    name: str
    fiscal_year: int
    quarter: int | None
    fiscal_year_start_month: int
    category: lg.BudgetCategory
    currency: str
    owner: str
    thresholds: tuple[int, ...]
    amount: Decimal
    version: int = 1
    closed: bool = False
    over_commit_approved: Decimal = ZERO
    #: Running total; the per-project figures in `allocations` add up to it.
    allocated: Decimal = ZERO
    allocations: LayeredMap[str, Decimal] = field(default_factory=LayeredMap)
    allocation_ids: RefSet = field(default_factory=RefSet)
    #: By external_ref (purchase orders, contracts) or asset_id (recurring costs).
    commitments: LayeredMap[str, CommitmentLine] = field(default_factory=LayeredMap)
    committed: Decimal = ZERO
    open_commitments: Decimal = ZERO
    actual_refs: RefSet = field(default_factory=RefSet)
    actual: Decimal = ZERO
    #: Actual cost by (project, month).
    actual_cells: LayeredMap[tuple[str, str], Decimal] = field(default_factory=LayeredMap)
    actual_by_project: LayeredMap[str, Decimal] = field(default_factory=LayeredMap)
    #: Threshold events already in the history: which are raised now.
    raised_thresholds: frozenset[int] = frozenset()
    overspent: frozenset[str] = frozenset()

    @property
    def months(self) -> tuple[str, ...]:
        return fiscal_months(self.fiscal_year, self.quarter, self.fiscal_year_start_month)

    @property
    def label(self) -> str:
        return fiscal_label(self.fiscal_year, self.quarter)

    @property
    def unallocated(self) -> Decimal:
        return self.amount - self.allocated

    @property
    def consumed(self) -> Decimal:
        return self.actual + self.open_commitments

    @property
    def consumption_percent(self) -> Decimal | None:
        return percent(self.consumed, self.amount)

    def allocated_to(self, project_id: str) -> Decimal:
        return self.allocations.get(project_id, ZERO)

    def actual_of(self, project_id: str) -> Decimal:
        return self.actual_by_project.get(project_id, ZERO)

    def projects(self) -> list[str]:
        """Every project the pool has a figure for, sorted."""
        found = set(self.allocations) | set(self.actual_by_project)
        found |= {line.project_id for line in self.commitments.values()}
        return sorted(found)


def _allocate(state: PoolState, project_id: str, delta: Decimal) -> PoolState:
    allocations = state.allocations.set(project_id, state.allocated_to(project_id) + delta)
    return _with(state, allocations=allocations, allocated=state.allocated + delta)


def _commit(state: PoolState, key: str, line: CommitmentLine) -> PoolState:
    return _with(
        state,
        commitments=state.commitments.set(key, line),
        committed=state.committed + line.amount,
        open_commitments=state.open_commitments + line.open,
    )


def _book_actual(state: PoolState, event: lg.ActualCostRecorded) -> PoolState:
    cell = (event.project_id, event.period)
    state = _with(
        state,
        actual_refs=state.actual_refs.add(event.external_ref),
        actual=state.actual + event.amount,
        actual_cells=state.actual_cells.set(
            cell, state.actual_cells.get(cell, ZERO) + event.amount
        ),
        actual_by_project=state.actual_by_project.set(
            event.project_id, state.actual_of(event.project_id) + event.amount
        ),
    )
    key = event.commitment_ref
    if key is None or key not in state.commitments:
        return state
    line = state.commitments[key]
    settled = _with(line, settled=line.settled + event.amount)
    return _with(
        state,
        commitments=state.commitments.set(key, settled),
        open_commitments=state.open_commitments - line.open + settled.open,
    )


def evolve_pool(state: PoolState | None, event: FrozenModel) -> PoolState:
    if isinstance(event, lg.BudgetPoolDefined):
        return PoolState(
            pool_id=event.pool_id,
            name=event.name,
            fiscal_year=event.fiscal_year,
            quarter=event.quarter,
            fiscal_year_start_month=event.fiscal_year_start_month,
            category=event.category,
            currency=event.currency,
            owner=event.owner,
            thresholds=event.thresholds,
            amount=event.amount,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before BudgetPoolDefined")
    state = _with(state, version=state.version + 1)
    match event:
        case lg.BudgetPoolAdjusted():
            return _with(state, amount=event.amount)
        case lg.BudgetPoolClosed():
            return _with(state, closed=True)
        case lg.BudgetAllocated():
            state = _allocate(state, event.project_id, event.amount)
            return _with(state, allocation_ids=state.allocation_ids.add(event.allocation_id))
        case lg.AllocationReleased():
            return _allocate(state, event.project_id, -event.amount)
        case lg.AllocationTransferred():
            state = _allocate(state, event.from_project_id, -event.amount)
            return _allocate(state, event.to_project_id, event.amount)
        case lg.OverCommitApproved():
            return _with(state, over_commit_approved=event.amount)
        case lg.CommitmentRecorded():
            line = CommitmentLine(event.project_id, event.amount, (event.period,), event.amount)
            return _commit(state, event.external_ref, line)
        case lg.RecurringCostRecorded():
            periods = months_between(event.first_period, event.last_period)
            line = CommitmentLine(
                event.project_id, event.total, periods, event.amount_per_period, event.asset_id
            )
            return _commit(state, event.asset_id, line)
        case lg.ActualCostRecorded():
            return _book_actual(state, event)
        case lg.PoolThresholdCrossed():
            return _with(
                state, raised_thresholds=state.raised_thresholds | {event.threshold_percent}
            )
        case lg.PoolThresholdCleared():
            return _with(
                state, raised_thresholds=state.raised_thresholds - {event.threshold_percent}
            )
        case lg.ProjectOverspent():
            return _with(state, overspent=state.overspent | {event.project_id})
        case lg.ProjectOverspendCleared():
            return _with(state, overspent=state.overspent - {event.project_id})
    return state


def _check_currency(command: lg.PoolCommand, state: PoolState) -> None:
    currency = getattr(command, "currency", None)
    if currency is not None and currency != state.currency:
        raise _refuse(
            ErrorCode.VALIDATION_FAILED,
            f"pool {state.pool_id} is in {state.currency}, not {currency}",
            "currency",
            currency,
        )


def _check_period(state: PoolState, period: str, field_name: str) -> None:
    months = state.months
    if period not in months:
        raise _refuse(
            ErrorCode.VALIDATION_FAILED,
            f"{period} is outside pool {state.pool_id} ({state.label}: {months[0]} to "
            f"{months[-1]})",
            field_name,
            period,
        )


def _check_headroom(
    state: PoolState, allocated: Decimal, amount: Decimal, approved: Decimal, requested: Decimal
) -> None:
    """Allocations beyond the pool amount only up to the approved over-commitment;
    `requested` is the command's `amount`, named in the refusal."""
    short = allocated - amount
    if short > approved:
        raise _refuse(
            ErrorCode.VALIDATION_FAILED,
            f"pool {state.pool_id} would be {short} {state.currency} short (allocated "
            f"{allocated} of {amount}) with an approved over-commitment of {approved}",
            "amount",
            requested,
        )


def decide_pool(
    command: Command, state: PoolState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    if not isinstance(command, lg.PoolCommand):
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not a pool command")
    pool_id = command.pool_id
    if isinstance(command, lg.DefineBudgetPool):
        if state is not None:
            raise _refuse(
                ErrorCode.ALREADY_EXISTS, f"pool {pool_id} already exists", "pool_id", pool_id
            )
        fields = command.model_dump(exclude=set(lg.PoolCommand.model_fields) - {"pool_id"})
        return [lg.BudgetPoolDefined(**fields)]
    if state is None:
        raise _refuse(ErrorCode.NOT_FOUND, f"pool {pool_id} does not exist", "pool_id", pool_id)
    if state.closed:
        raise _refuse(
            ErrorCode.ILLEGAL_TRANSITION,
            f"pool {pool_id} is closed: cannot {type(command).__name__}",
            "pool_id",
            pool_id,
        )
    _check_currency(command, state)
    currency = state.currency
    match command:
        case lg.AdjustBudgetPool():
            _check_headroom(
                state,
                state.allocated,
                command.amount,
                state.over_commit_approved,
                command.amount,
            )
            return [
                lg.BudgetPoolAdjusted(
                    pool_id=pool_id,
                    amount=command.amount,
                    previous_amount=state.amount,
                    currency=currency,
                    rationale=command.rationale,
                )
            ]
        case lg.ClosePool():
            return [lg.BudgetPoolClosed(pool_id=pool_id, rationale=command.rationale)]
        case lg.AllocateBudget():
            _fundable(refs, command.project_id, "project_id")
            allocation_id = command.allocation_id or command.command_id
            if allocation_id in state.allocation_ids:
                raise _refuse(
                    ErrorCode.ALREADY_EXISTS,
                    f"allocation {allocation_id} is already in pool {pool_id}",
                    "allocation_id",
                    allocation_id,
                )
            _check_headroom(
                state,
                state.allocated + command.amount,
                state.amount,
                state.over_commit_approved,
                command.amount,
            )
            return [
                lg.BudgetAllocated(
                    pool_id=pool_id,
                    project_id=command.project_id,
                    amount=command.amount,
                    currency=currency,
                    rationale=command.rationale,
                    allocation_id=allocation_id,
                )
            ]
        case lg.ReleaseAllocation():
            _check_held(state, command.project_id, command.amount)
            return [
                lg.AllocationReleased(
                    pool_id=pool_id,
                    project_id=command.project_id,
                    amount=command.amount,
                    currency=currency,
                    rationale=command.rationale,
                )
            ]
        case lg.TransferAllocation():
            _fundable(refs, command.to_project_id, "to_project_id")
            _check_held(state, command.from_project_id, command.amount)
            return [
                lg.AllocationTransferred(
                    pool_id=pool_id,
                    from_project_id=command.from_project_id,
                    to_project_id=command.to_project_id,
                    amount=command.amount,
                    currency=currency,
                    rationale=command.rationale,
                )
            ]
        case lg.ApproveOverCommit():
            _check_headroom(state, state.allocated, state.amount, command.amount, command.amount)
            return [
                lg.OverCommitApproved(
                    pool_id=pool_id,
                    amount=command.amount,
                    previous_amount=state.over_commit_approved,
                    currency=currency,
                    rationale=command.rationale,
                )
            ]
        case lg.RecordCommitment():
            _fundable(refs, command.project_id, "project_id")
            _check_period(state, command.period, "period")
            _check_new_commitment(state, command.external_ref, "external_ref")
            return [
                lg.CommitmentRecorded(
                    pool_id=pool_id,
                    project_id=command.project_id,
                    amount=command.amount,
                    currency=currency,
                    external_ref=command.external_ref,
                    period=command.period,
                )
            ]
        case lg.RecordActualCost():
            return [_actual_cost(command, state, refs)]
        case lg.RecordRecurringCost():
            _fundable(refs, command.project_id, "project_id")
            _check_period(state, command.first_period, "first_period")
            _check_period(state, command.last_period, "last_period")
            _check_new_commitment(state, command.asset_id, "asset_id")
            months = len(months_between(command.first_period, command.last_period))
            return [
                lg.RecurringCostRecorded(
                    pool_id=pool_id,
                    project_id=command.project_id,
                    asset_id=command.asset_id,
                    description=command.description,
                    amount_per_period=command.amount_per_period,
                    currency=currency,
                    first_period=command.first_period,
                    last_period=command.last_period,
                    total=command.amount_per_period * months,
                )
            ]
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")


def _check_held(state: PoolState, project_id: str, amount: Decimal) -> None:
    held = state.allocated_to(project_id)
    if amount > held:
        raise _refuse(
            ErrorCode.VALIDATION_FAILED,
            f"project {project_id} has {held} {state.currency} allocated in pool "
            f"{state.pool_id}, less than {amount}",
            "amount",
            amount,
        )


def _check_new_commitment(state: PoolState, key: str, field_name: str) -> None:
    if key in state.commitments:
        raise _refuse(
            ErrorCode.ALREADY_EXISTS,
            f"{key} is already recorded as a commitment in pool {state.pool_id}",
            field_name,
            key,
        )


def _actual_cost(command: lg.RecordActualCost, state: PoolState, refs: Refs) -> FrozenModel:
    _may_record_costs(refs, command.project_id, "project_id")
    _check_period(state, command.period, "period")
    if command.external_ref in state.actual_refs:
        raise _refuse(
            ErrorCode.ALREADY_EXISTS,
            f"actual cost {command.external_ref} is already recorded in pool {state.pool_id}",
            "external_ref",
            command.external_ref,
        )
    if command.commitment_ref is not None:
        line = state.commitments.get(command.commitment_ref)
        if line is None:
            raise _refuse(
                ErrorCode.NOT_FOUND,
                f"no commitment {command.commitment_ref} in pool {state.pool_id}",
                "commitment_ref",
                command.commitment_ref,
            )
        if line.project_id != command.project_id:
            raise _refuse(
                ErrorCode.VALIDATION_FAILED,
                f"commitment {command.commitment_ref} belongs to project {line.project_id}",
                "commitment_ref",
                command.commitment_ref,
            )
    return lg.ActualCostRecorded(
        pool_id=state.pool_id,
        project_id=command.project_id,
        amount=command.amount,
        currency=state.currency,
        external_ref=command.external_ref,
        period=command.period,
        source=command.source,
        commitment_ref=command.commitment_ref,
    )


# --- the capacity aggregate (one role) --------------------------------------------------


@dataclass(frozen=True)
class CapacityLine:
    amount: Decimal
    time_off: Decimal = ZERO

    @property
    def net(self) -> Decimal:
        return self.amount - self.time_off


@dataclass(frozen=True)
class CapacityState:
    role: str
    unit: lg.CapacityUnit
    version: int = 1
    capacity: Mapping[str, CapacityLine] = field(default_factory=dict)
    #: Demand by (project, month), and its running total by month.
    demand: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    demand_by_period: Mapping[str, Decimal] = field(default_factory=dict)
    hours_refs: RefSet = field(default_factory=RefSet)
    #: Actual hours by (project, month), and their running total.
    hours: LayeredMap[tuple[str, str], Decimal] = field(default_factory=LayeredMap)
    hours_total: Decimal = ZERO
    #: Months a RoleOverAllocated is raised for.
    over_allocated: frozenset[str] = frozenset()

    def net_capacity(self, period: str) -> Decimal:
        line = self.capacity.get(period)
        return line.net if line else ZERO

    def demand_in(self, period: str) -> Decimal:
        return self.demand_by_period.get(period, ZERO)

    def periods(self) -> list[str]:
        return sorted(set(self.capacity) | {period for _, period in self.demand})


def evolve_capacity(state: CapacityState | None, event: FrozenModel) -> CapacityState:
    if isinstance(event, lg.CapacitySet):
        line = CapacityLine(event.amount, event.time_off)
        if state is None:
            return CapacityState(role=event.role, unit=event.unit, capacity={event.period: line})
        return _with(
            state, version=state.version + 1, capacity={**state.capacity, event.period: line}
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before CapacitySet")
    state = _with(state, version=state.version + 1)
    match event:
        case lg.DemandAssigned():
            cell = (event.project_id, event.period)
            demand = dict(state.demand)
            if event.amount:
                demand[cell] = event.amount
            else:
                demand.pop(cell, None)
            by_period = {
                **state.demand_by_period,
                event.period: state.demand_in(event.period) - event.previous_amount + event.amount,
            }
            return _with(state, demand=demand, demand_by_period=by_period)
        case lg.ActualHoursRecorded():
            cell = (event.project_id, event.period)
            return _with(
                state,
                hours_refs=state.hours_refs.add(event.external_ref),
                hours=state.hours.set(cell, state.hours.get(cell, ZERO) + event.hours),
                hours_total=state.hours_total + event.hours,
            )
        case lg.RoleOverAllocated():
            return _with(state, over_allocated=state.over_allocated | {event.period})
        case lg.RoleOverAllocationCleared():
            return _with(state, over_allocated=state.over_allocated - {event.period})
    return state


def decide_capacity(
    command: Command, state: CapacityState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    if not isinstance(command, lg.CapacityCommand):
        raise Rejected(
            ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not a capacity command"
        )
    role = command.role
    if isinstance(command, lg.SetCapacity):
        if state is not None and state.unit != command.unit:
            raise _refuse(
                ErrorCode.VALIDATION_FAILED,
                f"role {role} is planned in {state.unit}, not {command.unit}",
                "unit",
                str(command.unit),
            )
        return [
            lg.CapacitySet(
                role=role,
                period=command.period,
                amount=command.amount,
                unit=command.unit,
                time_off=command.time_off,
            )
        ]
    if state is None:
        raise _refuse(
            ErrorCode.NOT_FOUND, f"role {role} has no capacity defined (SetCapacity)", "role", role
        )
    match command:
        case lg.AssignDemand():
            previous = state.demand.get((command.project_id, command.period), ZERO)
            if command.amount:
                _fundable(refs, command.project_id, "project_id")
            elif not previous:
                raise _refuse(
                    ErrorCode.VALIDATION_FAILED,
                    f"project {command.project_id} has no demand on role {role} in "
                    f"{command.period} to remove",
                    "amount",
                    command.amount,
                )
            return [
                lg.DemandAssigned(
                    role=role,
                    project_id=command.project_id,
                    period=command.period,
                    amount=command.amount,
                    previous_amount=previous,
                    unit=state.unit,
                )
            ]
        case lg.RecordActualHours():
            _may_record_costs(refs, command.project_id, "project_id")
            if command.external_ref in state.hours_refs:
                raise _refuse(
                    ErrorCode.ALREADY_EXISTS,
                    f"timesheet entry {command.external_ref} is already recorded for role {role}",
                    "external_ref",
                    command.external_ref,
                )
            return [
                lg.ActualHoursRecorded(
                    role=role,
                    project_id=command.project_id,
                    period=command.period,
                    hours=command.hours,
                    external_ref=command.external_ref,
                )
            ]
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")


# --- one entry point for both aggregates ------------------------------------------------

#: Aggregate type -> (evolve, decide), for intake's DOMAINS (wrap in intake.Domain).
DOMAINS: dict[str, tuple[Callable[[Any, FrozenModel], Any], Callable[..., list[FrozenModel]]]] = {
    lg.POOL: (evolve_pool, decide_pool),
    lg.CAPACITY: (evolve_capacity, decide_capacity),
}


def decide(
    command: Command, state: Any, now: datetime, refs: Refs | None = None
) -> list[FrozenModel]:
    """The events a ledger command produces, or `Rejected`."""
    if command.aggregate_type not in DOMAINS:
        raise Rejected(
            ErrorCode.UNKNOWN_COMMAND, f"no ledger domain handles {type(command).__name__}"
        )
    return DOMAINS[command.aggregate_type][1](command, state, now, refs or {})


def evolve(state: Any, event: FrozenModel) -> Any:
    return DOMAINS[lg.EVENT_AGGREGATE[type(event)]][0](state, event)


# --- thresholds -------------------------------------------------------------------------


def threshold_changes(
    raised: frozenset[int], thresholds: Iterable[int], consumed: Decimal, amount: Decimal
) -> tuple[list[int], list[int]]:
    """(newly crossed ascending, cleared descending): a threshold t is reached when
    consumed ≥ t% of amount (computed exactly, not on the rounded percentage)."""
    reached = {t for t in thresholds if consumed * HUNDRED >= t * amount}
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
    figures = {
        "pool_id": state.pool_id,
        "consumed": state.consumed,
        "amount": state.amount,
        "consumption_percent": state.consumption_percent or ZERO,
        "actual": state.actual,
        "open_commitments": state.open_commitments,
        "currency": state.currency,
    }
    events: list[FrozenModel] = [
        lg.PoolThresholdCrossed(threshold_percent=t, **figures) for t in crossed
    ]
    events += [lg.PoolThresholdCleared(threshold_percent=t, **figures) for t in cleared]
    candidates = set(state.actual_by_project) | state.overspent if projects is None else projects
    for project_id in sorted(set(candidates)):
        actual, allocated = state.actual_of(project_id), state.allocated_to(project_id)
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
        return sums.setdefault(key, _Sums(currency))

    for pool in pools:
        if by in POOL_GROUPINGS:
            total = row(_key(pool, "", by), pool.currency)
            total.amount = (total.amount or ZERO) + pool.amount
        for project_id, allocated in pool.allocations.items():
            row(_key(pool, project_id, by), pool.currency).allocated += allocated
        for line in pool.commitments.values():
            target = row(_key(pool, line.project_id, by), pool.currency)
            target.committed += line.amount
            target.open_commitments += line.open
            for period in line.periods:
                target.committed_by_period[period] += line.per_period
        for (project_id, period), actual in pool.actual_cells.items():
            row(_key(pool, project_id, by), pool.currency).actual_by_period[period] += actual
    return {key: sums[key].figures() for key in sorted(sums)}


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
        for period in sorted(set(state.periods()) | set(hours)):
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
