"""The resource ledger: budget pools and people capacity.

Two aggregates:

- a **budget pool** (`pool`, id `pool_id`): money for one fiscal year or quarter and one
  category (capex, opex), in one currency. Allocated to projects (released, transferred
  between projects), consumed by commitments (purchase orders, contracts), actual costs
  (typically from a finance tool) and recurring costs of technology assets and licences;
- the **capacity of one role** (`capacity`, id the role, e.g. `developer`): capacity and
  time off by month (FTE or hours), people demand assigned to projects by month, and the
  actual hours a timesheet tool reports.

Money is `Decimal` with at most 2 places, never float, always in the pool's currency
(`currency` on a command is optional and, when given, must be the pool's). Periods are
calendar months `YYYY-MM`. The threshold events at the end are not answers to commands:
the ledger service appends them itself, once per crossing.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from contracts.base import (
    AggregateKey,
    Command,
    FrozenModel,
    Identifier,
    Money,
    Name,
    Rationale,
    Title,
)
from contracts.projects import AGGREGATE as PROJECT
from contracts.projects import Currency, Year

POOL = "pool"
CAPACITY = "capacity"
#: The aggregate the ledger's own projection is keyed on first.
AGGREGATE = POOL

#: Money where zero makes no sense (an allocation, an invoice): more than 0, 2 places.
PositiveMoney = Annotated[Decimal, Field(gt=0, le=Decimal("1e12"), max_digits=16, decimal_places=2)]
#: A calendar month, `YYYY-MM`, between 2000-01 and 2100-12.
Period = Annotated[str, StringConstraints(pattern=r"^(?:20\d\d|2100)-(?:0[1-9]|1[0-2])$")]
#: A reference in another tool (purchase order, invoice, contract, timesheet entry).
ExternalRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
#: People capacity or demand: FTE or hours, at most 2 places.
Quantity = Annotated[Decimal, Field(ge=0, le=Decimal("1e9"), max_digits=14, decimal_places=2)]
PositiveQuantity = Annotated[
    Decimal, Field(gt=0, le=Decimal("1e9"), max_digits=14, decimal_places=2)
]
#: A pool consumption threshold, in percent of the pool amount.
ThresholdPercent = Annotated[int, Field(ge=1, le=1000)]


class BudgetCategory(StrEnum):
    CAPEX = "capex"
    OPEX = "opex"


class CapacityUnit(StrEnum):
    FTE = "fte"
    HOURS = "hours"


def _project(project_id: str) -> tuple[AggregateKey, ...]:
    return ((PROJECT, project_id),)


# --- budget pool commands ---------------------------------------------------------------


class PoolCommand(Command):
    """A command addressed to one budget pool."""

    aggregate_type = POOL
    id_field = "pool_id"
    pool_id: Identifier


class DefineBudgetPool(PoolCommand):
    """A pool for fiscal year `fiscal_year` (or one `quarter` of it). Fiscal year N starts
    in month `fiscal_year_start_month` of calendar year N (1: the calendar year); quarter 1
    is its first three months. `thresholds`: consumption percentages that raise an event."""

    name: Title
    fiscal_year: Year
    quarter: int | None = Field(default=None, ge=1, le=4)
    fiscal_year_start_month: int = Field(default=1, ge=1, le=12)
    category: BudgetCategory
    amount: PositiveMoney
    currency: Currency
    owner: Name
    thresholds: tuple[ThresholdPercent, ...] = Field(default=(80, 100), max_length=10)

    @field_validator("thresholds")
    @classmethod
    def _thresholds_once_sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a threshold is listed more than once")
        return tuple(sorted(value))


class AdjustBudgetPool(PoolCommand):
    """Set a new pool amount (refused if the allocations would then exceed it beyond an
    approved over-commitment)."""

    amount: PositiveMoney
    currency: Currency | None = None
    rationale: Rationale


class ClosePool(PoolCommand):
    """No further allocation or record on this pool."""

    rationale: Rationale


class AllocateBudget(PoolCommand):
    """Give `amount` of the pool to a project. `allocation_id` identifies the allocation
    (defaults to the command id); the same id twice is refused."""

    project_id: Identifier
    amount: PositiveMoney
    currency: Currency | None = None
    rationale: Rationale
    allocation_id: Identifier | None = None

    def references(self) -> tuple[AggregateKey, ...]:
        return _project(self.project_id)


class ReleaseAllocation(PoolCommand):
    """Give `amount` of a project's allocation back to the pool."""

    project_id: Identifier
    amount: PositiveMoney
    currency: Currency | None = None
    rationale: Rationale

    def references(self) -> tuple[AggregateKey, ...]:
        return _project(self.project_id)


class TransferAllocation(PoolCommand):
    """Move `amount` of one project's allocation to another project in the same pool."""

    from_project_id: Identifier
    to_project_id: Identifier
    amount: PositiveMoney
    currency: Currency | None = None
    rationale: Rationale

    @field_validator("to_project_id")
    @classmethod
    def _another_project(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("from_project_id"):
            raise ValueError("must differ from from_project_id")
        return value

    def references(self) -> tuple[AggregateKey, ...]:
        return _project(self.from_project_id) + _project(self.to_project_id)


class ApproveOverCommit(PoolCommand):
    """Allow the allocations to exceed the pool amount by at most `amount` (replacing any
    earlier approval; 0 withdraws it)."""

    amount: Money
    currency: Currency | None = None
    rationale: Rationale


class RecordCommitment(PoolCommand):
    """A purchase order or contract for a project, for the month `period`."""

    project_id: Identifier
    amount: PositiveMoney
    currency: Currency | None = None
    external_ref: ExternalRef
    period: Period

    def references(self) -> tuple[AggregateKey, ...]:
        return _project(self.project_id)


class RecordActualCost(PoolCommand):
    """A cost actually incurred by a project in the month `period`, as the finance tool
    (the command's `source`) books it. `commitment_ref` names the commitment (its
    `external_ref`) or recurring cost (its `asset_id`) this cost settles, if any."""

    project_id: Identifier
    amount: PositiveMoney
    currency: Currency | None = None
    external_ref: ExternalRef
    period: Period
    commitment_ref: ExternalRef | None = None

    def references(self) -> tuple[AggregateKey, ...]:
        return _project(self.project_id)


class RecordRecurringCost(PoolCommand):
    """A technology asset or licence: `amount_per_period` each month from `first_period`
    to `last_period` (inclusive), assigned to a project. Counts as a commitment."""

    project_id: Identifier
    asset_id: Identifier
    description: Title
    amount_per_period: PositiveMoney
    currency: Currency | None = None
    first_period: Period
    last_period: Period

    @field_validator("last_period")
    @classmethod
    def _not_before_first(cls, value: str, info: ValidationInfo) -> str:
        first = info.data.get("first_period")
        if first is not None and value < first:
            raise ValueError(f"last_period {value} is before first_period {first}")
        return value

    def references(self) -> tuple[AggregateKey, ...]:
        return _project(self.project_id)


# --- capacity commands ------------------------------------------------------------------


class CapacityCommand(Command):
    """A command addressed to the capacity of one role (or team)."""

    aggregate_type = CAPACITY
    id_field = "role"
    role: Identifier


class SetCapacity(CapacityCommand):
    """The role's capacity in one month (replacing an earlier figure), and the time off
    within it. A role keeps the unit it was first given."""

    period: Period
    amount: Quantity
    unit: CapacityUnit
    time_off: Quantity = Decimal(0)

    @field_validator("time_off")
    @classmethod
    def _within_capacity(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        amount = info.data.get("amount")
        if amount is not None and value > amount:
            raise ValueError(f"time_off {value} exceeds the capacity {amount}")
        return value


class AssignDemand(CapacityCommand):
    """What a project needs of the role in one month, in the role's unit (replacing an
    earlier figure; 0 removes the demand)."""

    project_id: Identifier
    period: Period
    amount: Quantity

    def references(self) -> tuple[AggregateKey, ...]:
        return _project(self.project_id)


class RecordActualHours(CapacityCommand):
    """Hours worked for a project in one month, as a timesheet tool reports them."""

    project_id: Identifier
    period: Period
    hours: PositiveQuantity
    external_ref: ExternalRef

    def references(self) -> tuple[AggregateKey, ...]:
        return _project(self.project_id)


# --- budget pool events -----------------------------------------------------------------


class BudgetPoolDefined(FrozenModel):
    pool_id: str
    name: str
    fiscal_year: int
    quarter: int | None
    fiscal_year_start_month: int = 1
    category: BudgetCategory
    amount: Decimal
    currency: str
    owner: str
    thresholds: tuple[int, ...]


class BudgetPoolAdjusted(FrozenModel):
    pool_id: str
    amount: Decimal
    previous_amount: Decimal
    currency: str
    rationale: str


class BudgetPoolClosed(FrozenModel):
    pool_id: str
    rationale: str


class BudgetAllocated(FrozenModel):
    pool_id: str
    project_id: str
    amount: Decimal
    currency: str
    rationale: str
    allocation_id: str


class AllocationReleased(FrozenModel):
    pool_id: str
    project_id: str
    amount: Decimal
    currency: str
    rationale: str


class AllocationTransferred(FrozenModel):
    pool_id: str
    from_project_id: str
    to_project_id: str
    amount: Decimal
    currency: str
    rationale: str


class OverCommitApproved(FrozenModel):
    pool_id: str
    amount: Decimal
    previous_amount: Decimal
    currency: str
    rationale: str


class CommitmentRecorded(FrozenModel):
    pool_id: str
    project_id: str
    amount: Decimal
    currency: str
    external_ref: str
    period: str


class ActualCostRecorded(FrozenModel):
    pool_id: str
    project_id: str
    amount: Decimal
    currency: str
    external_ref: str
    period: str
    source: str
    commitment_ref: str | None = None


class RecurringCostRecorded(FrozenModel):
    pool_id: str
    project_id: str
    asset_id: str
    description: str
    amount_per_period: Decimal
    currency: str
    first_period: str
    last_period: str
    #: amount_per_period * the number of months from first_period to last_period.
    total: Decimal


# --- capacity events --------------------------------------------------------------------


class CapacitySet(FrozenModel):
    role: str
    period: str
    amount: Decimal
    unit: CapacityUnit
    time_off: Decimal


class DemandAssigned(FrozenModel):
    role: str
    project_id: str
    period: str
    amount: Decimal
    previous_amount: Decimal
    unit: CapacityUnit


class ActualHoursRecorded(FrozenModel):
    role: str
    project_id: str
    period: str
    hours: Decimal
    external_ref: str


# --- threshold events (appended by the ledger service, not by commands) -----------------


class PoolThresholdCrossed(FrozenModel):
    """Consumption (actual + open commitments) reached `threshold_percent` of the pool."""

    pool_id: str
    threshold_percent: int
    consumed: Decimal
    amount: Decimal
    consumption_percent: Decimal
    actual: Decimal
    open_commitments: Decimal
    currency: str


class PoolThresholdCleared(FrozenModel):
    """Consumption fell back below `threshold_percent` of the pool."""

    pool_id: str
    threshold_percent: int
    consumed: Decimal
    amount: Decimal
    consumption_percent: Decimal
    actual: Decimal
    open_commitments: Decimal
    currency: str


class ProjectOverspent(FrozenModel):
    """A project's actual costs in the pool exceed its allocation there."""

    pool_id: str
    project_id: str
    actual: Decimal
    allocated: Decimal
    currency: str


class ProjectOverspendCleared(FrozenModel):
    pool_id: str
    project_id: str
    actual: Decimal
    allocated: Decimal
    currency: str


class RoleOverAllocated(FrozenModel):
    """Demand on a role in a month exceeds its capacity (net of time off) by more than
    `tolerance_percent`."""

    role: str
    period: str
    demand: Decimal
    capacity: Decimal
    tolerance_percent: Decimal
    unit: CapacityUnit


class RoleOverAllocationCleared(FrozenModel):
    role: str
    period: str
    demand: Decimal
    capacity: Decimal
    tolerance_percent: Decimal
    unit: CapacityUnit


POOL_COMMANDS: tuple[type[Command], ...] = (
    DefineBudgetPool,
    AdjustBudgetPool,
    ClosePool,
    AllocateBudget,
    ReleaseAllocation,
    TransferAllocation,
    ApproveOverCommit,
    RecordCommitment,
    RecordActualCost,
    RecordRecurringCost,
)
CAPACITY_COMMANDS: tuple[type[Command], ...] = (SetCapacity, AssignDemand, RecordActualHours)
COMMANDS: tuple[type[Command], ...] = POOL_COMMANDS + CAPACITY_COMMANDS

#: The events the ledger service decides itself (never the answer to a command).
POOL_THRESHOLD_EVENTS: tuple[type[FrozenModel], ...] = (
    PoolThresholdCrossed,
    PoolThresholdCleared,
    ProjectOverspent,
    ProjectOverspendCleared,
)
CAPACITY_THRESHOLD_EVENTS: tuple[type[FrozenModel], ...] = (
    RoleOverAllocated,
    RoleOverAllocationCleared,
)
THRESHOLD_EVENTS = POOL_THRESHOLD_EVENTS + CAPACITY_THRESHOLD_EVENTS

POOL_EVENTS: tuple[type[FrozenModel], ...] = (
    BudgetPoolDefined,
    BudgetPoolAdjusted,
    BudgetPoolClosed,
    BudgetAllocated,
    AllocationReleased,
    AllocationTransferred,
    OverCommitApproved,
    CommitmentRecorded,
    ActualCostRecorded,
    RecurringCostRecorded,
    *POOL_THRESHOLD_EVENTS,
)
CAPACITY_EVENTS: tuple[type[FrozenModel], ...] = (
    CapacitySet,
    DemandAssigned,
    ActualHoursRecorded,
    *CAPACITY_THRESHOLD_EVENTS,
)
EVENTS: tuple[type[FrozenModel], ...] = POOL_EVENTS + CAPACITY_EVENTS

#: The aggregate each event belongs to (this module holds two).
EVENT_AGGREGATE: dict[type[FrozenModel], str] = {
    **dict.fromkeys(POOL_EVENTS, POOL),
    **dict.fromkeys(CAPACITY_EVENTS, CAPACITY),
}
