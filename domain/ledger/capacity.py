"""The capacity aggregate: one role's capacity, time off and demand by month."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from contracts import ledger as lg
from contracts.base import Command, ErrorCode, FrozenModel
from domain.interning import shared_amount
from domain.kernel import Refs, Rejected, refuse
from domain.ledger.eligibility import fundable, may_record_costs
from domain.ledger.periods import ZERO, cell_of
from domain.ledger.persistent import LayeredMap, RefSet, with_changes

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
    #: Demand by (project, month) (layered: a demand copies no other cell), and its running
    #: total by month.
    demand: LayeredMap[tuple[str, str], Decimal] = field(default_factory=LayeredMap)
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
        return with_changes(
            state, version=state.version + 1, capacity={**state.capacity, event.period: line}
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before CapacitySet")
    state = with_changes(state, version=state.version + 1)
    match event:
        case lg.DemandAssigned():
            cell = cell_of(event.project_id, event.period)
            demand = (
                state.demand.set(cell, shared_amount(event.amount))
                if event.amount
                else state.demand.remove(cell)
            )
            by_period = {
                **state.demand_by_period,
                event.period: state.demand_in(event.period) - event.previous_amount + event.amount,
            }
            return with_changes(state, demand=demand, demand_by_period=by_period)
        case lg.ActualHoursRecorded():
            cell = cell_of(event.project_id, event.period)
            return with_changes(
                state,
                hours_refs=state.hours_refs.add(event.external_ref),
                hours=state.hours.set(
                    cell, shared_amount(state.hours.get(cell, ZERO) + event.hours)
                ),
                hours_total=state.hours_total + event.hours,
            )
        case lg.RoleOverAllocated():
            return with_changes(state, over_allocated=state.over_allocated | {event.period})
        case lg.RoleOverAllocationCleared():
            return with_changes(state, over_allocated=state.over_allocated - {event.period})
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
            raise refuse(
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
        raise refuse(
            ErrorCode.NOT_FOUND, f"role {role} has no capacity defined (SetCapacity)", "role", role
        )
    match command:
        case lg.AssignDemand():
            previous = state.demand.get((command.project_id, command.period), ZERO)
            if command.amount:
                fundable(refs, command.project_id, "project_id")
            elif not previous:
                raise refuse(
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
            may_record_costs(refs, command.project_id, "project_id")
            if command.external_ref in state.hours_refs:
                raise refuse(
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
