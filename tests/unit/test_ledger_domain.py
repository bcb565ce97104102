"""The resource ledger: given past events (and the projects a decision reads, `refs`),
when a command, then new events or a refusal naming the offending field. Pure domain and
contract parsing: no NATS, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import ledger as lg
from contracts import projects as p
from contracts.base import AggregateKey, Command, ErrorCode, FrozenModel
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from domain.ledger import (
    CapacityState,
    PoolState,
    capacity_threshold_events,
    decide_capacity,
    decide_pool,
    fiscal_months,
    pool_threshold_events,
)
from domain.ledger.periods import cell_of
from domain.projects import ProjectState

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
Status = p.ProjectStatus
D = Decimal
POOL = "CAPEX-2025"


def project(status: Status) -> ProjectState:
    return ProjectState(
        project_id="x",
        status=status,
        version=3,
        planned_start=date(2025, 1, 1),
        planned_end=date(2025, 12, 31),
    )


#: The projects the decisions may read (as intake loads them): one per status of interest.
REFS: dict[AggregateKey, Any] = {
    ("project", "CRM"): project(Status.IN_PROGRESS),
    ("project", "ERP"): project(Status.APPROVED),
    ("project", "IDEA"): project(Status.PROPOSED),
    ("project", "OLD"): project(Status.CANCELLED),
    ("project", "NOPE"): project(Status.REJECTED),
    ("project", "DONE"): project(Status.COMPLETED),
}


def given(*events: FrozenModel) -> Any:
    """The state one aggregate's history leaves behind, folded as intake folds it."""
    state: Any = None
    for event in events:
        state = evolve(state, event)
    return state


def when(
    command: Command, *history: FrozenModel, refs: Mapping[AggregateKey, Any] | None = None
) -> list[FrozenModel]:
    return decide(command, given(*history), NOW, REFS if refs is None else refs)


def refused(
    command: Command, *history: FrozenModel, refs: Mapping[AggregateKey, Any] | None = None
) -> Rejected:
    with pytest.raises(Rejected) as caught:
        when(command, *history, refs=refs)
    return caught.value


def fields(error: Rejected) -> list[str]:
    return [d.field for d in error.details]


def invalid_fields(model: type[FrozenModel], data: dict[str, Any]) -> list[str]:
    """Refused at parse time: the fields pydantic names."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [".".join(str(part) for part in e["loc"]) for e in caught.value.errors()]


# --- past events ----------------------------------------------------------------------

DEFINE = lg.DefineBudgetPool(
    pool_id=POOL,
    name="IT capex 2025",
    fiscal_year=2025,
    category="capex",
    amount=D("1000000"),
    currency="EUR",
    owner="cfo",
)
DEFINED = lg.BudgetPoolDefined(
    pool_id=POOL,
    name="IT capex 2025",
    fiscal_year=2025,
    quarter=None,
    fiscal_year_start_month=1,
    category=lg.BudgetCategory.CAPEX,
    amount=D("1000000"),
    currency="EUR",
    owner="cfo",
    thresholds=(80, 100),
)
ALLOCATED_CRM = lg.BudgetAllocated(
    pool_id=POOL,
    project_id="CRM",
    amount=D("600000"),
    currency="EUR",
    rationale="sales strategy",
    allocation_id="A-1",
)
ALLOCATED_ERP = lg.BudgetAllocated(
    pool_id=POOL,
    project_id="ERP",
    amount=D("300000"),
    currency="EUR",
    rationale="finance strategy",
    allocation_id="A-2",
)
CLOSED = lg.BudgetPoolClosed(pool_id=POOL, rationale="year end")
PO_1 = lg.CommitmentRecorded(
    pool_id=POOL,
    project_id="CRM",
    amount=D("200000"),
    currency="EUR",
    external_ref="PO-1",
    period="2025-03",
)

# --- commands ---------------------------------------------------------------------------

ALLOCATE = lg.AllocateBudget(
    pool_id=POOL, project_id="ERP", amount=D("50000"), rationale="phase 2", allocation_id="A-9"
)
RELEASE = lg.ReleaseAllocation(
    pool_id=POOL, project_id="CRM", amount=D("100000"), rationale="descoped"
)
TRANSFER = lg.TransferAllocation(
    pool_id=POOL,
    from_project_id="CRM",
    to_project_id="ERP",
    amount=D("100000"),
    rationale="ERP needs it more",
)
ADJUST = lg.AdjustBudgetPool(pool_id=POOL, amount=D("1200000"), rationale="mid-year top-up")
CLOSE = lg.ClosePool(pool_id=POOL, rationale="year end")
APPROVE = lg.ApproveOverCommit(pool_id=POOL, amount=D("50000"), rationale="board decision 12")
COMMIT = lg.RecordCommitment(
    pool_id=POOL, project_id="CRM", amount=D("120000"), external_ref="PO-7", period="2025-04"
)
ACTUAL = lg.RecordActualCost(
    pool_id=POOL,
    project_id="CRM",
    amount=D("45000.50"),
    external_ref="INV-1",
    period="2025-04",
    source="finance",
)
RECURRING = lg.RecordRecurringCost(
    pool_id=POOL,
    project_id="CRM",
    asset_id="LIC-SF",
    description="CRM licences",
    amount_per_period=D("1500"),
    first_period="2025-04",
    last_period="2025-12",
)

#: Every pool command but DefineBudgetPool, valid against DEFINED + ALLOCATED_CRM.
POOL_COMMANDS: list[Command] = [
    ADJUST,
    CLOSE,
    ALLOCATE,
    RELEASE,
    TRANSFER,
    APPROVE,
    COMMIT,
    ACTUAL,
    RECURRING,
]


def _name(command: object) -> str:
    return type(command).__name__


def test_the_helpers_cover_every_pool_command() -> None:
    assert {type(c) for c in POOL_COMMANDS} | {lg.DefineBudgetPool} == set(lg.POOL_COMMANDS)


@pytest.mark.parametrize("command", POOL_COMMANDS, ids=_name)
def test_every_pool_command_is_accepted_on_an_open_pool(command: Command) -> None:
    events = when(command, DEFINED, ALLOCATED_CRM)
    assert len(events) == 1
    state = given(DEFINED, ALLOCATED_CRM, *events)
    assert state.version == 3


# --- defining a pool --------------------------------------------------------------------


def test_define_a_pool() -> None:
    assert when(DEFINE) == [DEFINED]
    state = given(DEFINED)
    assert isinstance(state, PoolState)
    assert (state.amount, state.currency, state.allocated, state.unallocated) == (
        D(1000000),
        "EUR",
        D(0),
        D(1000000),
    )
    assert state.months == tuple(f"2025-{m:02d}" for m in range(1, 13))


def test_define_a_pool_twice_is_already_exists() -> None:
    error = refused(DEFINE, DEFINED)
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert fields(error) == ["pool_id"]


def test_a_quarter_pool_covers_its_three_months() -> None:
    assert fiscal_months(2025, 2) == ("2025-04", "2025-05", "2025-06")
    # A fiscal year starting in April: FY2025 runs from 2025-04 to 2026-03.
    assert fiscal_months(2025, None, 4)[0] == "2025-04"
    assert fiscal_months(2025, None, 4)[-1] == "2026-03"
    assert fiscal_months(2025, 4, 4) == ("2026-01", "2026-02", "2026-03")


def test_thresholds_are_sorted_and_configurable() -> None:
    command = DEFINE.model_copy(update={"thresholds": (100, 50, 90)})
    command = lg.DefineBudgetPool.model_validate(command.model_dump())
    [event] = when(command)
    assert isinstance(event, lg.BudgetPoolDefined)
    assert event.thresholds == (50, 90, 100)


DEFINE_DATA = DEFINE.model_dump(mode="json")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "-5"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "12.345"}, "amount"),
        ({"amount": "1e13"}, "amount"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"quarter": 5}, "quarter"),
        ({"quarter": 0}, "quarter"),
        ({"category": "misc"}, "category"),
        ({"fiscal_year": 1999}, "fiscal_year"),
        ({"fiscal_year_start_month": 13}, "fiscal_year_start_month"),
        ({"thresholds": [80, 80]}, "thresholds"),
        ({"thresholds": [0]}, "thresholds.0"),
        ({"owner": ""}, "owner"),
    ],
)
def test_a_bad_pool_definition_is_refused_at_parse_time(
    changes: dict[str, Any], field: str
) -> None:
    assert invalid_fields(lg.DefineBudgetPool, DEFINE_DATA | changes) == [field]


@pytest.mark.parametrize("command", [DEFINE, *POOL_COMMANDS], ids=_name)
def test_unknown_pool_is_not_found_for_every_command_but_define(command: Command) -> None:
    if isinstance(command, lg.DefineBudgetPool):
        assert when(command) == [DEFINED]
        return
    error = refused(command)
    assert error.code == ErrorCode.NOT_FOUND
    assert fields(error) == ["pool_id"]


# --- adjusting and closing ----------------------------------------------------------------


def test_adjust_records_the_previous_amount() -> None:
    assert when(ADJUST, DEFINED, ALLOCATED_CRM) == [
        lg.BudgetPoolAdjusted(
            pool_id=POOL,
            amount=D(1200000),
            previous_amount=D(1000000),
            currency="EUR",
            rationale="mid-year top-up",
        )
    ]


def test_adjust_below_the_allocations_is_refused_unless_approved() -> None:
    cut = ADJUST.model_copy(update={"amount": D(800000)})
    history = (DEFINED, ALLOCATED_CRM, ALLOCATED_ERP)  # 900,000 allocated
    error = refused(cut, *history)
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == ["amount"]
    assert "100000" in error.message
    approved = lg.OverCommitApproved(
        pool_id=POOL,
        amount=D(100000),
        previous_amount=D(0),
        currency="EUR",
        rationale="board",
    )
    [event] = when(cut, *history, approved)
    assert given(*history, approved, event).unallocated == D(-100000)


def test_close_a_pool() -> None:
    assert when(CLOSE, DEFINED) == [CLOSED]
    assert given(DEFINED, CLOSED).closed is True


@pytest.mark.parametrize("command", POOL_COMMANDS, ids=_name)
def test_a_closed_pool_takes_no_more_commands(command: Command) -> None:
    error = refused(command, DEFINED, ALLOCATED_CRM, CLOSED)
    assert error.code == ErrorCode.ILLEGAL_TRANSITION
    assert fields(error) == ["pool_id"]
    assert "closed" in error.message


# --- currency -------------------------------------------------------------------------------

MONEY_COMMANDS = [c for c in POOL_COMMANDS if "currency" in type(c).model_fields]


@pytest.mark.parametrize("command", MONEY_COMMANDS, ids=_name)
def test_a_currency_the_pool_does_not_use_is_refused(command: Command) -> None:
    in_dollars = command.model_copy(update={"currency": "USD"})
    error = refused(in_dollars, DEFINED, ALLOCATED_CRM)
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == ["currency"]
    assert error.details[0].input == "USD"


@pytest.mark.parametrize("command", MONEY_COMMANDS, ids=_name)
def test_the_pool_currency_given_explicitly_is_accepted(command: Command) -> None:
    [event] = when(command.model_copy(update={"currency": "EUR"}), DEFINED, ALLOCATED_CRM)
    assert getattr(event, "currency", "EUR") == "EUR"


# --- amounts at parse time ------------------------------------------------------------------

#: (command, its amount field) for every command carrying money or people.
AMOUNTS: list[tuple[Command, str]] = [
    (ADJUST, "amount"),
    (ALLOCATE, "amount"),
    (RELEASE, "amount"),
    (TRANSFER, "amount"),
    (APPROVE, "amount"),
    (COMMIT, "amount"),
    (ACTUAL, "amount"),
    (RECURRING, "amount_per_period"),
]


@pytest.mark.parametrize(("command", "field"), AMOUNTS, ids=lambda c: _name(c))
@pytest.mark.parametrize("amount", ["-1", "-0.01", "abc", "", "1.001", "Infinity", None, [1]])
def test_negative_or_non_numeric_amounts_are_refused_at_parse_time(
    command: Command, field: str, amount: Any
) -> None:
    data = command.model_dump(mode="json") | {field: amount}
    assert invalid_fields(type(command), data) == [field]


@pytest.mark.parametrize(
    ("command", "field"), [a for a in AMOUNTS if a[0] is not APPROVE], ids=lambda c: _name(c)
)
def test_zero_is_refused_where_it_makes_no_sense(command: Command, field: str) -> None:
    data = command.model_dump(mode="json") | {field: "0"}
    assert invalid_fields(type(command), data) == [field]


def test_money_parses_to_decimal_never_float() -> None:
    data = ACTUAL.model_dump(mode="json") | {"amount": 0.1}
    parsed = lg.RecordActualCost.model_validate(data)
    assert parsed.amount == D("0.1")
    assert isinstance(parsed.amount, Decimal)


# --- allocating -----------------------------------------------------------------------------


def test_allocate_budget_to_a_project() -> None:
    [event] = when(ALLOCATE, DEFINED, ALLOCATED_CRM)
    assert event == lg.BudgetAllocated(
        pool_id=POOL,
        project_id="ERP",
        amount=D(50000),
        currency="EUR",
        rationale="phase 2",
        allocation_id="A-9",
    )
    state = given(DEFINED, ALLOCATED_CRM, event)
    assert state.allocated == D(650000)
    assert dict(state.allocations) == {"CRM": D(600000), "ERP": D(50000)}


def test_an_allocation_id_defaults_to_the_command_id() -> None:
    command = ALLOCATE.model_copy(update={"allocation_id": None, "command_id": "cmd-42"})
    [event] = when(command, DEFINED)
    assert isinstance(event, lg.BudgetAllocated)
    assert event.allocation_id == "cmd-42"


def test_the_same_allocation_id_twice_is_already_exists() -> None:
    error = refused(ALLOCATE.model_copy(update={"allocation_id": "A-1"}), DEFINED, ALLOCATED_CRM)
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert fields(error) == ["allocation_id"]


def test_a_proposed_project_may_be_earmarked_budget() -> None:
    [event] = when(ALLOCATE.model_copy(update={"project_id": "IDEA"}), DEFINED)
    assert isinstance(event, lg.BudgetAllocated)


def test_allocating_beyond_the_pool_is_refused() -> None:
    too_much = ALLOCATE.model_copy(update={"amount": D("100000.01")})
    error = refused(too_much, DEFINED, ALLOCATED_CRM, ALLOCATED_ERP)
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert fields(error) == ["amount"]
    assert error.details[0].input == D("100000.01")
    # Exactly the free amount is fine: the pool reaches 0, not below.
    exactly = too_much.model_copy(update={"amount": D(100000)})
    [event] = when(exactly, DEFINED, ALLOCATED_CRM, ALLOCATED_ERP)
    assert given(DEFINED, ALLOCATED_CRM, ALLOCATED_ERP, event).unallocated == 0


def test_an_approved_over_commitment_lets_the_pool_go_negative_by_at_most_that() -> None:
    history = (DEFINED, ALLOCATED_CRM, ALLOCATED_ERP)  # 100,000 free
    [approved] = when(APPROVE, *history)
    assert approved == lg.OverCommitApproved(
        pool_id=POOL,
        amount=D(50000),
        previous_amount=D(0),
        currency="EUR",
        rationale="board decision 12",
    )
    within = ALLOCATE.model_copy(update={"amount": D(150000)})
    [event] = when(within, *history, approved)
    assert given(*history, approved, event).unallocated == D(-50000)
    beyond = ALLOCATE.model_copy(update={"amount": D("150000.01")})
    assert fields(refused(beyond, *history, approved)) == ["amount"]


def test_an_approval_cannot_be_lowered_below_the_current_shortfall() -> None:
    approved = lg.OverCommitApproved(
        pool_id=POOL, amount=D(50000), previous_amount=D(0), currency="EUR", rationale="board"
    )
    over = ALLOCATE.model_copy(update={"amount": D(130000)})
    before = (DEFINED, ALLOCATED_CRM, ALLOCATED_ERP, approved)
    history = (*before, *when(over, *before))
    assert given(*history).unallocated == D(-30000)
    error = refused(APPROVE.model_copy(update={"amount": D(29999)}), *history)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["amount"])
    assert when(APPROVE.model_copy(update={"amount": D(30000)}), *history)


def test_withdrawing_an_approval_when_nothing_is_over_committed() -> None:
    [event] = when(APPROVE.model_copy(update={"amount": D(0)}), DEFINED, ALLOCATED_CRM)
    assert isinstance(event, lg.OverCommitApproved)
    assert event.amount == 0


@pytest.mark.parametrize(
    ("project_id", "code"),
    [
        ("GHOST", ErrorCode.NOT_FOUND),
        ("OLD", ErrorCode.ILLEGAL_TRANSITION),
        ("NOPE", ErrorCode.ILLEGAL_TRANSITION),
        ("DONE", ErrorCode.ILLEGAL_TRANSITION),
    ],
)
def test_allocating_to_an_unknown_cancelled_rejected_or_completed_project_is_refused(
    project_id: str, code: ErrorCode
) -> None:
    error = refused(ALLOCATE.model_copy(update={"project_id": project_id}), DEFINED)
    assert error.code == code
    assert fields(error) == ["project_id"]
    assert error.details[0].input == project_id


def test_a_project_missing_from_refs_is_not_found() -> None:
    """intake passes None for a referenced aggregate with no events."""
    error = refused(ALLOCATE, DEFINED, refs={("project", "ERP"): None})
    assert (error.code, fields(error)) == (ErrorCode.NOT_FOUND, ["project_id"])


# --- releasing and transferring -------------------------------------------------------------


def test_release_part_of_an_allocation() -> None:
    [event] = when(RELEASE, DEFINED, ALLOCATED_CRM)
    assert event == lg.AllocationReleased(
        pool_id=POOL, project_id="CRM", amount=D(100000), currency="EUR", rationale="descoped"
    )
    state = given(DEFINED, ALLOCATED_CRM, event)
    assert (state.allocated_to("CRM"), state.allocated) == (D(500000), D(500000))


def test_releasing_more_than_allocated_is_refused() -> None:
    error = refused(RELEASE.model_copy(update={"amount": D("600000.01")}), DEFINED, ALLOCATED_CRM)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["amount"])
    assert "600000" in error.message
    nothing = refused(RELEASE.model_copy(update={"project_id": "ERP"}), DEFINED, ALLOCATED_CRM)
    assert fields(nothing) == ["amount"]


def test_a_cancelled_project_gives_its_allocation_back() -> None:
    to_old = ALLOCATED_CRM.model_copy(update={"project_id": "OLD", "allocation_id": "A-3"})
    release = RELEASE.model_copy(update={"project_id": "OLD", "amount": D(600000)})
    [event] = when(release, DEFINED, to_old)
    assert given(DEFINED, to_old, event).allocated == 0


def test_transfer_between_projects() -> None:
    [event] = when(TRANSFER, DEFINED, ALLOCATED_CRM)
    assert event == lg.AllocationTransferred(
        pool_id=POOL,
        from_project_id="CRM",
        to_project_id="ERP",
        amount=D(100000),
        currency="EUR",
        rationale="ERP needs it more",
    )
    state = given(DEFINED, ALLOCATED_CRM, event)
    assert dict(state.allocations) == {"CRM": D(500000), "ERP": D(100000)}
    assert state.allocated == D(600000)


def test_a_transfer_that_would_overdraw_the_source_is_refused() -> None:
    error = refused(TRANSFER.model_copy(update={"amount": D(600001)}), DEFINED, ALLOCATED_CRM)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["amount"])


@pytest.mark.parametrize(
    ("project_id", "code"),
    [("GHOST", ErrorCode.NOT_FOUND), ("OLD", ErrorCode.ILLEGAL_TRANSITION)],
)
def test_a_transfer_to_an_unknown_or_cancelled_project_is_refused(
    project_id: str, code: ErrorCode
) -> None:
    command = TRANSFER.model_copy(update={"to_project_id": project_id})
    error = refused(command, DEFINED, ALLOCATED_CRM)
    assert (error.code, fields(error)) == (code, ["to_project_id"])


def test_a_transfer_to_the_same_project_is_refused_at_parse_time() -> None:
    data = TRANSFER.model_dump(mode="json") | {"to_project_id": "CRM"}
    assert invalid_fields(lg.TransferAllocation, data) == ["to_project_id"]


# --- commitments, actuals, recurring costs --------------------------------------------------


def test_record_a_commitment() -> None:
    [event] = when(COMMIT, DEFINED, ALLOCATED_CRM)
    assert event == lg.CommitmentRecorded(
        pool_id=POOL,
        project_id="CRM",
        amount=D(120000),
        currency="EUR",
        external_ref="PO-7",
        period="2025-04",
    )
    state = given(DEFINED, ALLOCATED_CRM, event)
    assert (state.committed, state.open_commitments, state.consumed) == (D(120000),) * 3


def test_record_an_actual_cost_names_the_tool_it_came_from() -> None:
    [event] = when(ACTUAL, DEFINED, ALLOCATED_CRM)
    assert event == lg.ActualCostRecorded(
        pool_id=POOL,
        project_id="CRM",
        amount=D("45000.50"),
        currency="EUR",
        external_ref="INV-1",
        period="2025-04",
        source="finance",
    )
    state = given(DEFINED, ALLOCATED_CRM, event)
    assert (state.actual, state.actual_of("CRM")) == (D("45000.50"), D("45000.50"))


def test_an_actual_that_settles_a_commitment_reduces_what_is_open() -> None:
    invoice = ACTUAL.model_copy(update={"commitment_ref": "PO-1", "amount": D(80000)})
    [event] = when(invoice, DEFINED, ALLOCATED_CRM, PO_1)
    state = given(DEFINED, ALLOCATED_CRM, PO_1, event)
    assert (state.committed, state.open_commitments, state.actual) == (
        D(200000),
        D(120000),
        D(80000),
    )
    assert state.consumed == D(200000)  # not 280,000: the invoice is not counted twice
    # An invoice beyond the order leaves nothing open, and never a negative.
    more = ACTUAL.model_copy(
        update={"commitment_ref": "PO-1", "amount": D(150000), "external_ref": "INV-2"}
    )
    [extra] = when(more, DEFINED, ALLOCATED_CRM, PO_1, event)
    state = given(DEFINED, ALLOCATED_CRM, PO_1, event, extra)
    assert (state.open_commitments, state.actual, state.consumed) == (0, D(230000), D(230000))


def test_an_actual_naming_an_unknown_commitment_is_not_found() -> None:
    error = refused(ACTUAL.model_copy(update={"commitment_ref": "PO-404"}), DEFINED)
    assert (error.code, fields(error)) == (ErrorCode.NOT_FOUND, ["commitment_ref"])


def test_an_actual_naming_another_projects_commitment_is_refused() -> None:
    erp = ACTUAL.model_copy(update={"commitment_ref": "PO-1", "project_id": "ERP"})
    error = refused(erp, DEFINED, PO_1)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["commitment_ref"])


@pytest.mark.parametrize(
    "command", [COMMIT, ACTUAL, ACTUAL.model_copy(update={"external_ref": "PO-1"})], ids=_name
)
def test_a_duplicated_finance_record_is_already_exists(command: Command) -> None:
    [first] = when(command, DEFINED)
    again = command.model_copy(update={"command_id": "a-retry-by-another-id"})
    error = refused(again, DEFINED, first)
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert fields(error) == ["external_ref"]


def test_an_invoice_may_carry_the_same_reference_as_a_purchase_order() -> None:
    """Commitments and actuals are numbered apart: only a repeat of the same kind is a
    duplicate."""
    same_ref = ACTUAL.model_copy(update={"external_ref": "PO-1"})
    assert when(same_ref, DEFINED, PO_1)


@pytest.mark.parametrize("command", [COMMIT, ACTUAL], ids=_name)
@pytest.mark.parametrize("period", ["2024-12", "2026-01"])
def test_a_period_outside_the_pool_is_refused(command: Command, period: str) -> None:
    error = refused(command.model_copy(update={"period": period}), DEFINED)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["period"])
    assert "2025-01 to 2025-12" in error.message


def test_a_quarter_pool_refuses_the_months_of_other_quarters() -> None:
    q2 = DEFINED.model_copy(update={"quarter": 2})
    assert when(COMMIT.model_copy(update={"period": "2025-06"}), q2)
    error = refused(COMMIT.model_copy(update={"period": "2025-07"}), q2)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["period"])
    assert "FY2025-Q2" in error.message


@pytest.mark.parametrize("period", ["2025-13", "2025-1", "25-01", "2025/01", "1999-12", ""])
def test_a_malformed_period_is_refused_at_parse_time(period: str) -> None:
    data = COMMIT.model_dump(mode="json") | {"period": period}
    assert invalid_fields(lg.RecordCommitment, data) == ["period"]


@pytest.mark.parametrize("command", [COMMIT, RECURRING], ids=_name)
@pytest.mark.parametrize(
    ("project_id", "code"),
    [
        ("GHOST", ErrorCode.NOT_FOUND),
        ("OLD", ErrorCode.ILLEGAL_TRANSITION),
        ("NOPE", ErrorCode.ILLEGAL_TRANSITION),
    ],
)
def test_no_new_commitment_for_an_unknown_or_closed_project(
    command: Command, project_id: str, code: ErrorCode
) -> None:
    error = refused(command.model_copy(update={"project_id": project_id}), DEFINED)
    assert (error.code, fields(error)) == (code, ["project_id"])


def test_actuals_for_an_unknown_project_are_not_found() -> None:
    error = refused(ACTUAL.model_copy(update={"project_id": "GHOST"}), DEFINED)
    assert (error.code, fields(error)) == (ErrorCode.NOT_FOUND, ["project_id"])


def test_actuals_for_a_rejected_project_are_refused() -> None:
    error = refused(ACTUAL.model_copy(update={"project_id": "NOPE"}), DEFINED)
    assert (error.code, fields(error)) == (ErrorCode.ILLEGAL_TRANSITION, ["project_id"])


@pytest.mark.parametrize("project_id", ["OLD", "DONE"])
def test_late_invoices_of_a_cancelled_or_completed_project_are_recorded(project_id: str) -> None:
    [event] = when(ACTUAL.model_copy(update={"project_id": project_id}), DEFINED)
    assert isinstance(event, lg.ActualCostRecorded)


def test_record_a_recurring_licence_cost() -> None:
    [event] = when(RECURRING, DEFINED)
    assert event == lg.RecurringCostRecorded(
        pool_id=POOL,
        project_id="CRM",
        asset_id="LIC-SF",
        description="CRM licences",
        amount_per_period=D(1500),
        currency="EUR",
        first_period="2025-04",
        last_period="2025-12",
        total=D(13500),
    )
    state = given(DEFINED, event)
    assert (state.committed, state.open_commitments) == (D(13500), D(13500))
    assert state.commitments["LIC-SF"].periods[0] == "2025-04"
    # The licence invoices settle it like a purchase order.
    march = ACTUAL.model_copy(update={"commitment_ref": "LIC-SF", "amount": D(1500)})
    state = given(DEFINED, event, *when(march, DEFINED, event))
    assert state.open_commitments == D(12000)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"first_period": "2024-12"}, "first_period"),
        ({"last_period": "2026-01"}, "last_period"),
    ],
)
def test_a_recurring_cost_beyond_the_pool_is_refused(changes: dict[str, str], field: str) -> None:
    error = refused(RECURRING.model_copy(update=changes), DEFINED)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, [field])


def test_a_recurring_cost_ending_before_it_starts_is_refused_at_parse_time() -> None:
    data = RECURRING.model_dump(mode="json") | {"last_period": "2025-03"}
    assert invalid_fields(lg.RecordRecurringCost, data) == ["last_period"]


def test_the_same_asset_twice_is_already_exists() -> None:
    [first] = when(RECURRING, DEFINED)
    error = refused(RECURRING, DEFINED, first)
    assert (error.code, fields(error)) == (ErrorCode.ALREADY_EXISTS, ["asset_id"])
    clash = RECURRING.model_copy(update={"asset_id": "PO-1"})
    assert fields(refused(clash, DEFINED, PO_1)) == ["asset_id"]


# --- references ---------------------------------------------------------------------------


def test_commands_naming_a_project_ask_intake_to_load_it() -> None:
    for command in (ALLOCATE, RELEASE, COMMIT, ACTUAL, RECURRING):
        assert command.references() == (("project", command.project_id),)
    assert TRANSFER.references() == (("project", "CRM"), ("project", "ERP"))
    for other in (DEFINE, ADJUST, CLOSE, APPROVE):
        assert other.references() == ()
    assert ALLOCATE.aggregate_key() == ("pool", POOL)


def test_a_foreign_command_is_unknown_to_the_ledger() -> None:
    foreign = p.ApproveProject(project_id="CRM", rationale="because")
    for decide_ledger, state in ((decide_pool, given(DEFINED)), (decide_capacity, None)):
        with pytest.raises(Rejected) as caught:
            decide_ledger(foreign, state, NOW, {})
        assert caught.value.code == ErrorCode.UNKNOWN_COMMAND


# --- capacity -------------------------------------------------------------------------------

ROLE = "developer"
SET = lg.SetCapacity(role=ROLE, period="2025-04", amount=D(10), unit="fte", time_off=D("1.5"))
CAPACITY_SET = lg.CapacitySet(
    role=ROLE, period="2025-04", amount=D(10), unit=lg.CapacityUnit.FTE, time_off=D("1.5")
)
ASSIGN = lg.AssignDemand(role=ROLE, project_id="CRM", period="2025-04", amount=D(4))
ASSIGNED = lg.DemandAssigned(
    role=ROLE,
    project_id="CRM",
    period="2025-04",
    amount=D(4),
    previous_amount=D(0),
    unit=lg.CapacityUnit.FTE,
)
HOURS = lg.RecordActualHours(
    role=ROLE, project_id="CRM", period="2025-04", hours=D("152.5"), external_ref="TS-1"
)


def test_set_capacity_creates_the_role() -> None:
    assert when(SET) == [CAPACITY_SET]
    state = given(CAPACITY_SET)
    assert isinstance(state, CapacityState)
    assert (state.unit, state.net_capacity("2025-04"), state.net_capacity("2025-05")) == (
        lg.CapacityUnit.FTE,
        D("8.5"),
        D(0),
    )


def test_set_capacity_again_replaces_the_month() -> None:
    again = CAPACITY_SET.model_copy(update={"amount": D(12), "time_off": D(0)})
    assert when(SET.model_copy(update={"amount": D(12), "time_off": D(0)}), CAPACITY_SET) == [again]
    state = given(CAPACITY_SET, again)
    assert (state.net_capacity("2025-04"), state.version) == (D(12), 2)


def test_a_role_keeps_its_unit() -> None:
    error = refused(SET.model_copy(update={"unit": lg.CapacityUnit.HOURS}), CAPACITY_SET)
    assert (error.code, fields(error)) == (ErrorCode.VALIDATION_FAILED, ["unit"])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"time_off": "11"}, "time_off"),
        ({"amount": "-1"}, "amount"),
        ({"amount": "many"}, "amount"),
        ({"unit": "days"}, "unit"),
        ({"period": "2025-00"}, "period"),
        ({"role": "dev ops"}, "role"),
    ],
)
def test_bad_capacity_is_refused_at_parse_time(changes: dict[str, Any], field: str) -> None:
    data = SET.model_dump(mode="json") | changes
    assert invalid_fields(lg.SetCapacity, data) == [field]


def test_assign_demand_records_the_previous_figure() -> None:
    assert when(ASSIGN, CAPACITY_SET) == [ASSIGNED]
    more = ASSIGN.model_copy(update={"amount": D(6)})
    [event] = when(more, CAPACITY_SET, ASSIGNED)
    assert event == ASSIGNED.model_copy(update={"amount": D(6), "previous_amount": D(4)})
    state = given(CAPACITY_SET, ASSIGNED, event)
    assert state.demand_in("2025-04") == D(6)


def test_demand_of_zero_removes_it() -> None:
    [event] = when(ASSIGN.model_copy(update={"amount": D(0)}), CAPACITY_SET, ASSIGNED)
    state = given(CAPACITY_SET, ASSIGNED, event)
    assert (dict(state.demand), state.demand_in("2025-04")) == ({}, 0)
    nothing = refused(ASSIGN.model_copy(update={"amount": D(0)}), CAPACITY_SET)
    assert (nothing.code, fields(nothing)) == (ErrorCode.VALIDATION_FAILED, ["amount"])


def test_demand_of_a_cancelled_project_can_still_be_removed() -> None:
    old = ASSIGNED.model_copy(update={"project_id": "OLD"})
    clear = ASSIGN.model_copy(update={"project_id": "OLD", "amount": D(0)})
    assert when(clear, CAPACITY_SET, old)


@pytest.mark.parametrize("command", [ASSIGN, HOURS], ids=_name)
def test_an_unknown_role_is_not_found(command: Command) -> None:
    error = refused(command)
    assert (error.code, fields(error)) == (ErrorCode.NOT_FOUND, ["role"])


@pytest.mark.parametrize(
    ("project_id", "code"),
    [
        ("GHOST", ErrorCode.NOT_FOUND),
        ("OLD", ErrorCode.ILLEGAL_TRANSITION),
        ("NOPE", ErrorCode.ILLEGAL_TRANSITION),
    ],
)
def test_no_demand_for_an_unknown_or_closed_project(project_id: str, code: ErrorCode) -> None:
    error = refused(ASSIGN.model_copy(update={"project_id": project_id}), CAPACITY_SET)
    assert (error.code, fields(error)) == (code, ["project_id"])


def test_record_actual_hours() -> None:
    [event] = when(HOURS, CAPACITY_SET)
    assert event == lg.ActualHoursRecorded(
        role=ROLE, project_id="CRM", period="2025-04", hours=D("152.5"), external_ref="TS-1"
    )
    assert given(CAPACITY_SET, event).hours_total == D("152.5")


def test_the_same_timesheet_entry_twice_is_already_exists() -> None:
    [first] = when(HOURS, CAPACITY_SET)
    error = refused(HOURS, CAPACITY_SET, first)
    assert (error.code, fields(error)) == (ErrorCode.ALREADY_EXISTS, ["external_ref"])


@pytest.mark.parametrize(
    ("project_id", "code"),
    [("GHOST", ErrorCode.NOT_FOUND), ("NOPE", ErrorCode.ILLEGAL_TRANSITION)],
)
def test_hours_for_an_unknown_or_rejected_project_are_refused(
    project_id: str, code: ErrorCode
) -> None:
    error = refused(HOURS.model_copy(update={"project_id": project_id}), CAPACITY_SET)
    assert (error.code, fields(error)) == (code, ["project_id"])


@pytest.mark.parametrize("hours", ["0", "-8", "eight", "1.234"])
def test_bad_hours_are_refused_at_parse_time(hours: str) -> None:
    data = HOURS.model_dump(mode="json") | {"hours": hours}
    assert invalid_fields(lg.RecordActualHours, data) == ["hours"]


def test_capacity_commands_reference_their_project() -> None:
    assert ASSIGN.references() == (("project", "CRM"),)
    assert HOURS.references() == (("project", "CRM"),)
    assert SET.references() == ()
    assert SET.aggregate_key() == ("capacity", ROLE)


# --- thresholds -----------------------------------------------------------------------------


def settle(state: Any, check: Any) -> tuple[Any, list[FrozenModel]]:
    """What the ledger service does after a change: check, append, fold."""
    events = check(state)
    for event in events:
        state = evolve(state, event)
    return state, events


def actual(amount: str, ref: str, project_id: str = "CRM") -> lg.ActualCostRecorded:
    return lg.ActualCostRecorded(
        pool_id=POOL,
        project_id=project_id,
        amount=D(amount),
        currency="EUR",
        external_ref=ref,
        period="2025-05",
        source="finance",
    )


def test_pool_thresholds_are_raised_once_per_crossing_and_cleared_once() -> None:
    state = given(DEFINED, ALLOCATED_CRM)
    state, events = settle(state, pool_threshold_events)
    assert events == []
    # 200,000 committed + 599,999.99 actual: 79.99 %, no threshold yet.
    state = evolve(evolve(state, PO_1), actual("599999.99", "INV-1"))
    state, events = settle(state, pool_threshold_events)
    assert events == []
    # One cent more: exactly 80 %.
    state = evolve(state, actual("0.01", "INV-2"))
    state, events = settle(state, pool_threshold_events)
    assert events == [
        lg.PoolThresholdCrossed(
            pool_id=POOL,
            threshold_percent=80,
            consumed=D(800000),
            amount=D(1000000),
            consumption_percent=D("80.00"),
            actual=D(600000),
            open_commitments=D(200000),
            currency="EUR",
        )
    ]
    # Further spending below 100 %: nothing new.
    state = evolve(state, actual("1000", "INV-3", "ERP"))
    state, events = settle(state, pool_threshold_events)
    assert [type(e) for e in events] == [lg.ProjectOverspent]  # ERP has no allocation
    # A top-up brings consumption back to 801,000 / 1,100,000 = 72.82 %: cleared once.
    adjusted = lg.BudgetPoolAdjusted(
        pool_id=POOL, amount=D(1100000), previous_amount=D(1000000), currency="EUR", rationale="r"
    )
    state, events = settle(evolve(state, adjusted), pool_threshold_events)
    assert events == [
        lg.PoolThresholdCleared(
            pool_id=POOL,
            threshold_percent=80,
            consumed=D(801000),
            amount=D(1100000),
            consumption_percent=D("72.82"),
            actual=D(601000),
            open_commitments=D(200000),
            currency="EUR",
        )
    ]
    assert settle(state, pool_threshold_events)[1] == []


def test_a_jump_past_several_thresholds_raises_each_in_order_and_clears_in_reverse() -> None:
    state = evolve(given(DEFINED), actual("1200000", "INV-1"))
    state, events = settle(state, pool_threshold_events)
    pool_events = [e for e in events if isinstance(e, lg.PoolThresholdCrossed)]
    assert [e.threshold_percent for e in pool_events] == [80, 100]
    assert pool_events[0].consumption_percent == D("120.00")
    assert state.raised_thresholds == {80, 100}
    bigger = lg.BudgetPoolAdjusted(
        pool_id=POOL, amount=D(2000000), previous_amount=D(1000000), currency="EUR", rationale="r"
    )
    state, events = settle(evolve(state, bigger), pool_threshold_events)
    assert [(type(e).__name__, getattr(e, "threshold_percent", None)) for e in events] == [
        ("PoolThresholdCleared", 100),
        ("PoolThresholdCleared", 80),
    ]


def test_a_project_overspends_once_and_is_cleared_by_more_allocation() -> None:
    state = evolve(given(DEFINED, ALLOCATED_CRM), actual("600000", "INV-1"))
    assert settle(state, pool_threshold_events)[1] == []  # at the allocation, not beyond
    state = evolve(state, actual("0.01", "INV-2"))
    state, events = settle(state, pool_threshold_events)
    overspent = [e for e in events if isinstance(e, lg.ProjectOverspent)]
    assert overspent == [
        lg.ProjectOverspent(
            pool_id=POOL,
            project_id="CRM",
            actual=D("600000.01"),
            allocated=D(600000),
            currency="EUR",
        )
    ]
    state = evolve(state, actual("5", "INV-3"))
    assert not [e for e in settle(state, pool_threshold_events)[1] if "Overspen" in _name(e)]
    more = ALLOCATED_CRM.model_copy(update={"amount": D(10), "allocation_id": "A-5"})
    state, events = settle(evolve(state, more), pool_threshold_events)
    assert events == [
        lg.ProjectOverspendCleared(
            pool_id=POOL,
            project_id="CRM",
            actual=D("600005.01"),
            allocated=D(600010),
            currency="EUR",
        )
    ]


def test_a_role_over_allocated_beyond_the_tolerance_is_raised_once_and_cleared() -> None:
    tolerance = D(10)

    def check(state: CapacityState) -> list[FrozenModel]:
        return capacity_threshold_events(state, tolerance)

    # Net capacity 8.5 FTE; 10 % tolerance: over-allocated beyond 9.35.
    state = given(CAPACITY_SET, ASSIGNED)
    assert settle(state, check)[1] == []
    at_tolerance = ASSIGNED.model_copy(update={"amount": D("9.35"), "previous_amount": D(4)})
    state = evolve(state, at_tolerance)
    assert settle(state, check)[1] == []
    beyond = ASSIGNED.model_copy(update={"amount": D("9.36"), "previous_amount": D("9.35")})
    state, events = settle(evolve(state, beyond), check)
    assert events == [
        lg.RoleOverAllocated(
            role=ROLE,
            period="2025-04",
            demand=D("9.36"),
            capacity=D("8.5"),
            tolerance_percent=D(10),
            unit=lg.CapacityUnit.FTE,
        )
    ]
    assert state.over_allocated == {"2025-04"}
    other = lg.DemandAssigned(
        role=ROLE,
        project_id="ERP",
        period="2025-04",
        amount=D(1),
        previous_amount=D(0),
        unit=lg.CapacityUnit.FTE,
    )
    state, events = settle(evolve(state, other), check)
    assert events == []  # still over: not raised again
    more_people = CAPACITY_SET.model_copy(update={"amount": D(12), "time_off": D(0)})
    state, events = settle(evolve(state, more_people), check)
    assert events == [
        lg.RoleOverAllocationCleared(
            role=ROLE,
            period="2025-04",
            demand=D("10.36"),
            capacity=D(12),
            tolerance_percent=D(10),
            unit=lg.CapacityUnit.FTE,
        )
    ]
    assert settle(state, check)[1] == []


def test_demand_in_a_month_without_capacity_is_over_allocated() -> None:
    may = ASSIGNED.model_copy(update={"period": "2025-05"})
    state = given(CAPACITY_SET, may)
    [event] = capacity_threshold_events(state, periods=["2025-05"])
    assert isinstance(event, lg.RoleOverAllocated)
    assert (event.demand, event.capacity) == (D(4), D(0))


# --- the contracts ------------------------------------------------------------------------


def test_every_event_belongs_to_one_of_the_two_aggregates() -> None:
    assert set(lg.EVENT_AGGREGATE) == set(lg.EVENTS)
    assert {c.aggregate_type for c in lg.COMMANDS} == {lg.POOL, lg.CAPACITY}
    assert lg.AGGREGATE == lg.POOL
    names = [m.__name__ for m in (*lg.COMMANDS, *lg.EVENTS)]
    assert len(names) == len(set(names))


def test_ledger_names_do_not_clash_with_the_other_contracts() -> None:
    from contracts.registry import COMMANDS, EVENTS

    """Once registered, each name must still lead to the ledger's own model."""
    for command in lg.COMMANDS:
        assert COMMANDS.get(command.__name__, command) is command
    for event in lg.EVENTS:
        assert EVENTS.get(event.__name__, event) is event


@pytest.mark.parametrize("model", [*lg.COMMANDS, *lg.EVENTS], ids=lambda m: m.__name__)
def test_every_contract_exports_a_json_schema(model: type[FrozenModel]) -> None:
    if issubclass(model, Command):
        schema = model.model_json_schema(mode="validation")
    else:
        schema = model.model_json_schema(mode="serialization")
    assert schema["title"] == model.__name__


def test_events_round_trip_through_json() -> None:
    for event in (DEFINED, ALLOCATED_CRM, PO_1, CAPACITY_SET, ASSIGNED, actual("1.10", "I")):
        again = type(event).model_validate_json(event.model_dump_json())
        assert again == event


def test_a_pools_cells_share_one_string_per_project_and_month() -> None:
    """Each event parsed from the wire brings its own copies of the ids: the cells keep
    one, however many invoices name them (memory that would grow with every invoice)."""
    state = given(DEFINED, ALLOCATED_CRM)
    for ref in ("INV-1", "INV-2", "INV-3"):
        wire = actual("100", ref).model_dump_json()
        state = evolve(state, lg.ActualCostRecorded.model_validate_json(wire))
    ((project_id, period),) = list(state.actual_cells)
    assert state.actual_cells[(project_id, period)] == D("300")
    shared = cell_of("".join(["CR", "M"]), "".join(["2025", "-05"]))
    assert project_id is shared[0] and period is shared[1]
