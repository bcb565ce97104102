"""The budget pool aggregate: allocations, transfers, commitments and actual costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from contracts import ledger as lg
from contracts.base import Command, ErrorCode, FrozenModel
from domain.kernel import Refs, Rejected, refuse
from domain.ledger.eligibility import fundable, may_record_costs
from domain.ledger.periods import (
    ZERO,
    cell_of,
    fiscal_label,
    fiscal_months,
    months_between,
    percent,
)
from domain.ledger.persistent import LayeredMap, RefSet, with_changes

# --- refusals ---------------------------------------------------------------------------


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
    return with_changes(state, allocations=allocations, allocated=state.allocated + delta)


def _commit(state: PoolState, key: str, line: CommitmentLine) -> PoolState:
    return with_changes(
        state,
        commitments=state.commitments.set(key, line),
        committed=state.committed + line.amount,
        open_commitments=state.open_commitments + line.open,
    )


def _book_actual(state: PoolState, event: lg.ActualCostRecorded) -> PoolState:
    cell = cell_of(event.project_id, event.period)
    state = with_changes(
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
    settled = with_changes(line, settled=line.settled + event.amount)
    return with_changes(
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
    state = with_changes(state, version=state.version + 1)
    match event:
        case lg.BudgetPoolAdjusted():
            return with_changes(state, amount=event.amount)
        case lg.BudgetPoolClosed():
            return with_changes(state, closed=True)
        case lg.BudgetAllocated():
            state = _allocate(state, event.project_id, event.amount)
            return with_changes(state, allocation_ids=state.allocation_ids.add(event.allocation_id))
        case lg.AllocationReleased():
            return _allocate(state, event.project_id, -event.amount)
        case lg.AllocationTransferred():
            state = _allocate(state, event.from_project_id, -event.amount)
            return _allocate(state, event.to_project_id, event.amount)
        case lg.OverCommitApproved():
            return with_changes(state, over_commit_approved=event.amount)
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
            return with_changes(
                state, raised_thresholds=state.raised_thresholds | {event.threshold_percent}
            )
        case lg.PoolThresholdCleared():
            return with_changes(
                state, raised_thresholds=state.raised_thresholds - {event.threshold_percent}
            )
        case lg.ProjectOverspent():
            return with_changes(state, overspent=state.overspent | {event.project_id})
        case lg.ProjectOverspendCleared():
            return with_changes(state, overspent=state.overspent - {event.project_id})
    return state


def _check_currency(command: lg.PoolCommand, state: PoolState) -> None:
    currency = getattr(command, "currency", None)
    if currency is not None and currency != state.currency:
        raise refuse(
            ErrorCode.VALIDATION_FAILED,
            f"pool {state.pool_id} is in {state.currency}, not {currency}",
            "currency",
            currency,
        )


def _check_period(state: PoolState, period: str, field_name: str) -> None:
    months = state.months
    if period not in months:
        raise refuse(
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
        raise refuse(
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
            raise refuse(
                ErrorCode.ALREADY_EXISTS, f"pool {pool_id} already exists", "pool_id", pool_id
            )
        fields = command.model_dump(exclude=set(lg.PoolCommand.model_fields) - {"pool_id"})
        return [lg.BudgetPoolDefined(**fields)]
    if state is None:
        raise refuse(ErrorCode.NOT_FOUND, f"pool {pool_id} does not exist", "pool_id", pool_id)
    if state.closed:
        raise refuse(
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
            fundable(refs, command.project_id, "project_id")
            allocation_id = command.allocation_id or command.command_id
            if allocation_id in state.allocation_ids:
                raise refuse(
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
            fundable(refs, command.to_project_id, "to_project_id")
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
            fundable(refs, command.project_id, "project_id")
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
            fundable(refs, command.project_id, "project_id")
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
        raise refuse(
            ErrorCode.VALIDATION_FAILED,
            f"project {project_id} has {held} {state.currency} allocated in pool "
            f"{state.pool_id}, less than {amount}",
            "amount",
            amount,
        )


def _check_new_commitment(state: PoolState, key: str, field_name: str) -> None:
    if key in state.commitments:
        raise refuse(
            ErrorCode.ALREADY_EXISTS,
            f"{key} is already recorded as a commitment in pool {state.pool_id}",
            field_name,
            key,
        )


def _actual_cost(command: lg.RecordActualCost, state: PoolState, refs: Refs) -> FrozenModel:
    may_record_costs(refs, command.project_id, "project_id")
    _check_period(state, command.period, "period")
    if command.external_ref in state.actual_refs:
        raise refuse(
            ErrorCode.ALREADY_EXISTS,
            f"actual cost {command.external_ref} is already recorded in pool {state.pool_id}",
            "external_ref",
            command.external_ref,
        )
    if command.commitment_ref is not None:
        line = state.commitments.get(command.commitment_ref)
        if line is None:
            raise refuse(
                ErrorCode.NOT_FOUND,
                f"no commitment {command.commitment_ref} in pool {state.pool_id}",
                "commitment_ref",
                command.commitment_ref,
            )
        if line.project_id != command.project_id:
            raise refuse(
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
