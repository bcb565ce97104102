"""Random sequences of ledger commands through the pure decide/evolve, as intake runs them,
with the threshold check the ledger service runs after every change.

After every step: a reference model of the rules (written apart from the domain) agrees
with each acceptance and refusal (code and field); the pool is never short beyond its
approved over-commitment; every figure ties out (sum of allocations = pool allocated, sum
of actuals by period = total, the reports agree with the state); and each threshold is
raised exactly when its figure crosses it and cleared exactly when it falls back: once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import ledger as lg
from contracts import projects as p
from contracts.base import AggregateKey, Command, ErrorCode, FrozenModel
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from domain.ledger import (
    CapacityState,
    Grouping,
    LayeredMap,
    PoolState,
    RefSet,
    budget_report,
    capacity_report,
    capacity_threshold_events,
    capacity_tie_out_problems,
    months_between,
    pool_threshold_events,
    pool_tie_out_problems,
    staffing_plan,
)
from domain.projects import ProjectState

D = Decimal
ZERO = D(0)
NOW = datetime(2025, 5, 1, tzinfo=UTC)
Status = p.ProjectStatus
POOL = "P"
#: The pool is FY2025 Q2; the periods tried straddle it.
MONTHS = ("2025-04", "2025-05", "2025-06")
PERIODS = ("2025-03", *MONTHS, "2025-07")
#: A: in progress, B: approved, C: cancelled, R: rejected, U: unknown to intake.
STATUSES = {"A": Status.IN_PROGRESS, "B": Status.APPROVED, "C": Status.CANCELLED}
STATUSES |= {"R": Status.REJECTED}
REFS: dict[AggregateKey, Any] = {
    ("project", pid): ProjectState(pid, status, 2, date(2025, 1, 1), date(2025, 12, 31))
    for pid, status in STATUSES.items()
}
FUNDABLE = {"A", "B"}
RAN = {"A", "B", "C"}

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def money(low: str = "0.01", high: str = "400") -> st.SearchStrategy[Decimal]:
    """Any amount in the range, or often a round one (so that releases and transfers find
    allocations large enough, and figures land exactly on thresholds)."""
    common = [D(v) for v in ("0.01", "1", "5", "25", "100") if D(low) <= D(v) <= D(high)]
    return st.one_of(
        st.sampled_from(common),
        st.decimals(
            min_value=D(low), max_value=D(high), places=2, allow_nan=False, allow_infinity=False
        ),
    )


#: Weighted towards commands that can be accepted, so that runs go somewhere.
projects = st.sampled_from(["A", "A", "A", "B", "B", "B", "C", "R", "U"])
currencies = st.sampled_from([None] * 6 + ["EUR", "USD"])
refs = st.sampled_from(["X1", "X2", "X3", "L1"])
periods = st.sampled_from(MONTHS * 3 + ("2025-03", "2025-07"))
WHY = "random step"


@st.composite
def transfers(draw: st.DrawFn) -> lg.TransferAllocation:
    source = draw(projects)
    target = draw(projects.filter(lambda pid: pid != source))
    return lg.TransferAllocation(
        pool_id=POOL,
        from_project_id=source,
        to_project_id=target,
        amount=draw(money()),
        currency=draw(currencies),
        rationale=WHY,
    )


@st.composite
def recurring_costs(draw: st.DrawFn) -> lg.RecordRecurringCost:
    first, last = sorted(draw(st.lists(periods, min_size=2, max_size=2)))
    return lg.RecordRecurringCost(
        pool_id=POOL,
        project_id=draw(projects),
        asset_id=draw(st.sampled_from(["L1", "L2", "X1"])),
        description="licence",
        amount_per_period=draw(money(high="60")),
        currency=draw(currencies),
        first_period=first,
        last_period=last,
    )


POOL_STEPS: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        lg.AllocateBudget,
        pool_id=st.just(POOL),
        project_id=projects,
        amount=money(),
        currency=currencies,
        rationale=st.just(WHY),
        allocation_id=st.sampled_from([None, None, "L1", "L2"]),
    ),
    st.builds(
        lg.ReleaseAllocation,
        pool_id=st.just(POOL),
        project_id=projects,
        amount=money(),
        currency=currencies,
        rationale=st.just(WHY),
    ),
    transfers(),
    st.builds(
        lg.AdjustBudgetPool,
        pool_id=st.just(POOL),
        amount=money("1", "1500"),
        currency=currencies,
        rationale=st.just(WHY),
    ),
    st.builds(
        lg.ApproveOverCommit,
        pool_id=st.just(POOL),
        amount=money("0", "300"),
        currency=currencies,
        rationale=st.just(WHY),
    ),
    st.builds(
        lg.RecordCommitment,
        pool_id=st.just(POOL),
        project_id=projects,
        amount=money(),
        currency=currencies,
        external_ref=refs,
        period=periods,
    ),
    st.builds(
        lg.RecordActualCost,
        pool_id=st.just(POOL),
        project_id=projects,
        amount=money(),
        currency=currencies,
        external_ref=refs,
        period=periods,
        commitment_ref=st.sampled_from([None, None, "X1", "X2", "L1", "L2"]),
        source=st.just("finance"),
    ),
    recurring_costs(),
)
DEFINITIONS = st.builds(
    lg.DefineBudgetPool,
    pool_id=st.just(POOL),
    name=st.just("pool"),
    fiscal_year=st.just(2025),
    quarter=st.just(2),
    category=st.sampled_from(list(lg.BudgetCategory)),
    amount=money("100", "1000"),
    currency=st.just("EUR"),
    owner=st.just("cfo"),
    thresholds=st.lists(st.integers(1, 150), unique=True, max_size=4).map(tuple),
)

Outcome = tuple[ErrorCode, str] | None


@dataclass
class PoolModel:
    """The rules of the pool, restated plainly: what each command should do."""

    amount: Decimal
    thresholds: tuple[int, ...]
    approved: Decimal = ZERO
    closed: bool = False
    allocations: dict[str, Decimal] = field(default_factory=dict)
    allocation_ids: set[str] = field(default_factory=set)
    #: key -> [project, amount, settled]
    commitments: dict[str, list[Any]] = field(default_factory=dict)
    actual_refs: set[str] = field(default_factory=set)
    actuals: list[tuple[str, str, Decimal]] = field(default_factory=list)

    @property
    def allocated(self) -> Decimal:
        return sum(self.allocations.values(), D(0))

    @property
    def actual(self) -> Decimal:
        return sum((a for _, _, a in self.actuals), D(0))

    @property
    def open(self) -> Decimal:
        return sum((max(D(0), c[1] - c[2]) for c in self.commitments.values()), D(0))

    def reached(self) -> set[int]:
        consumed = self.actual + self.open
        return {t for t in self.thresholds if consumed / self.amount * 100 >= t}

    def overspent(self) -> set[str]:
        spent: dict[str, Decimal] = defaultdict(Decimal)
        for project, _, amount in self.actuals:
            spent[project] += amount
        return {pid for pid, a in spent.items() if a > self.allocations.get(pid, D(0))}

    def expect(self, c: Command) -> Outcome:
        if self.closed:
            return (ErrorCode.ILLEGAL_TRANSITION, "pool_id")
        if getattr(c, "currency", None) not in (None, "EUR"):
            return (ErrorCode.VALIDATION_FAILED, "currency")
        short_by = self.allocated - self.amount
        match c:
            case lg.AdjustBudgetPool():
                if self.allocated - c.amount > self.approved:
                    return (ErrorCode.VALIDATION_FAILED, "amount")
            case lg.AllocateBudget():
                if wrong := fundable(c.project_id, "project_id"):
                    return wrong
                if (c.allocation_id or c.command_id) in self.allocation_ids:
                    return (ErrorCode.ALREADY_EXISTS, "allocation_id")
                if short_by + c.amount > self.approved:
                    return (ErrorCode.VALIDATION_FAILED, "amount")
            case lg.ReleaseAllocation():
                if c.amount > self.allocations.get(c.project_id, D(0)):
                    return (ErrorCode.VALIDATION_FAILED, "amount")
            case lg.TransferAllocation():
                if wrong := fundable(c.to_project_id, "to_project_id"):
                    return wrong
                if c.amount > self.allocations.get(c.from_project_id, D(0)):
                    return (ErrorCode.VALIDATION_FAILED, "amount")
            case lg.ApproveOverCommit():
                if short_by > c.amount:
                    return (ErrorCode.VALIDATION_FAILED, "amount")
            case lg.RecordCommitment():
                if wrong := fundable(c.project_id, "project_id"):
                    return wrong
                if c.period not in MONTHS:
                    return (ErrorCode.VALIDATION_FAILED, "period")
                if c.external_ref in self.commitments:
                    return (ErrorCode.ALREADY_EXISTS, "external_ref")
            case lg.RecordActualCost():
                if wrong := ran(c.project_id):
                    return wrong
                if c.period not in MONTHS:
                    return (ErrorCode.VALIDATION_FAILED, "period")
                if c.external_ref in self.actual_refs:
                    return (ErrorCode.ALREADY_EXISTS, "external_ref")
                if c.commitment_ref is not None:
                    if c.commitment_ref not in self.commitments:
                        return (ErrorCode.NOT_FOUND, "commitment_ref")
                    if self.commitments[c.commitment_ref][0] != c.project_id:
                        return (ErrorCode.VALIDATION_FAILED, "commitment_ref")
            case lg.RecordRecurringCost():
                if wrong := fundable(c.project_id, "project_id"):
                    return wrong
                if c.first_period not in MONTHS:
                    return (ErrorCode.VALIDATION_FAILED, "first_period")
                if c.last_period not in MONTHS:
                    return (ErrorCode.VALIDATION_FAILED, "last_period")
                if c.asset_id in self.commitments:
                    return (ErrorCode.ALREADY_EXISTS, "asset_id")
        return None

    def apply(self, c: Command) -> None:
        match c:
            case lg.AdjustBudgetPool():
                self.amount = c.amount
            case lg.ClosePool():
                self.closed = True
            case lg.AllocateBudget():
                self.allocations[c.project_id] = self.allocations.get(c.project_id, D(0)) + c.amount
                self.allocation_ids.add(c.allocation_id or c.command_id)
            case lg.ReleaseAllocation():
                self.allocations[c.project_id] -= c.amount
            case lg.TransferAllocation():
                self.allocations[c.from_project_id] -= c.amount
                target = self.allocations.get(c.to_project_id, D(0))
                self.allocations[c.to_project_id] = target + c.amount
            case lg.ApproveOverCommit():
                self.approved = c.amount
            case lg.RecordCommitment():
                self.commitments[c.external_ref] = [c.project_id, c.amount, D(0)]
            case lg.RecordActualCost():
                self.actual_refs.add(c.external_ref)
                self.actuals.append((c.project_id, c.period, c.amount))
                if c.commitment_ref is not None:
                    self.commitments[c.commitment_ref][2] += c.amount
            case lg.RecordRecurringCost():
                months = len(months_between(c.first_period, c.last_period))
                total = c.amount_per_period * months
                self.commitments[c.asset_id] = [c.project_id, total, D(0)]


def guided(model: PoolModel, kind: int, pick: int) -> Command | None:
    """A command aimed at what the pool holds now (random steps alone rarely hit these):
    a release or transfer within a project's allocation, an allocation of the headroom,
    an invoice settling a known commitment, a top-up of the pool. Built from two drawn
    integers, which is much cheaper than a strategy per step."""
    held = sorted(pid for pid, amount in model.allocations.items() if amount > 0)
    if kind in (0, 1) and held:
        project_id = held[pick % len(held)]
        share = model.allocations[project_id] * (pick % 100 + 1) / 100
        amount = max(D("0.01"), share.quantize(D("0.01"), rounding=ROUND_DOWN))
        if kind == 0:
            return lg.ReleaseAllocation(
                pool_id=POOL, project_id=project_id, amount=amount, rationale=WHY
            )
        return lg.TransferAllocation(
            pool_id=POOL,
            from_project_id=project_id,
            to_project_id=[pid for pid in "ABC" if pid != project_id][pick % 2],
            amount=amount,
            rationale=WHY,
        )
    headroom = model.amount + model.approved - model.allocated
    if kind == 2 and headroom >= D("0.01"):
        return lg.AllocateBudget(
            pool_id=POOL,
            project_id="AB"[pick % 2],
            amount=headroom if pick % 3 else min(headroom, D(1)),
            rationale=WHY,
        )
    if kind == 4 and model.amount < 10_000:
        # A top-up: consumption falls back, and thresholds clear.
        top_up = (model.amount * (pick % 3 + 2) / 2).quantize(D("0.01"))
        return lg.AdjustBudgetPool(pool_id=POOL, amount=top_up, rationale=WHY)
    if kind == 3 and model.commitments:
        key = sorted(model.commitments)[pick % len(model.commitments)]
        return lg.RecordActualCost(
            pool_id=POOL,
            project_id=model.commitments[key][0],
            amount=D(pick % 97 + 1),
            external_ref=f"G{pick % 13}",
            period=MONTHS[pick % 3],
            commitment_ref=key,
            source="finance",
        )
    return None


def next_command(data: st.DataObject, model: PoolModel) -> Command:
    kind = data.draw(st.integers(0, 199))
    if kind == 137:  # not 0: hypothesis favours the bounds, and closing ends a run
        return lg.ClosePool(pool_id=POOL, rationale=WHY)
    if kind < 60:
        aimed = guided(model, kind % 5, data.draw(st.integers(0, 10_000)))
        if aimed is not None:
            return aimed
    return data.draw(POOL_STEPS)


def fundable(project_id: str, field_name: str) -> Outcome:
    if project_id not in STATUSES:
        return (ErrorCode.NOT_FOUND, field_name)
    if project_id not in FUNDABLE:
        return (ErrorCode.ILLEGAL_TRANSITION, field_name)
    return None


def ran(project_id: str) -> Outcome:
    if project_id not in STATUSES:
        return (ErrorCode.NOT_FOUND, "project_id")
    if project_id not in RAN:
        return (ErrorCode.ILLEGAL_TRANSITION, "project_id")
    return None


def attempt(command: Command, state: Any) -> tuple[Any, Outcome]:
    """Decide and fold, as intake does; the refusal (code, field) if any."""
    try:
        events = decide(command, state, NOW, REFS)
    except Rejected as refused:
        assert len(refused.details) == 1, "a refusal names the offending field"
        return state, (refused.code, refused.details[0].field)
    for event in events:
        state = evolve(state, event)
    return state, None


def settle(state: Any, check: Any) -> tuple[Any, list[FrozenModel]]:
    """The ledger service after a change: check the thresholds, append, fold."""
    events: list[FrozenModel] = check(state)
    for event in events:
        state = evolve(state, event)
    assert check(state) == [], "a second check right after raises nothing again"
    return state, events


def check_pool_figures(state: PoolState, model: PoolModel) -> None:
    assert pool_tie_out_problems(state) == []
    assert state.unallocated >= -state.over_commit_approved
    assert all(amount >= 0 for amount in state.allocations.values())
    assert (state.amount, state.over_commit_approved) == (model.amount, model.approved)
    assert dict(state.allocations) == model.allocations
    assert state.allocated == model.allocated
    assert (state.actual, state.open_commitments) == (model.actual, model.open)
    row = budget_report([state])[(POOL,)]
    assert (row.allocated, row.actual, row.open_commitments) == (
        model.allocated,
        model.actual,
        model.open,
    )
    assert row.forecast_at_completion == model.actual + model.open
    assert row.remaining == model.allocated - row.forecast_at_completion
    assert row.unallocated == model.amount - model.allocated
    by_period: dict[str, Decimal] = defaultdict(Decimal)
    for _, period, amount in model.actuals:
        by_period[period] += amount
    assert row.actual_by_period == dict(sorted(by_period.items()))
    assert sum(row.actual_by_period.values(), D(0)) == row.actual
    assert sum(row.committed_by_period.values(), D(0)) == row.committed == state.committed
    by_project = budget_report([state], Grouping.POOL_PROJECT).values()
    assert sum((r.allocated for r in by_project), D(0)) == row.allocated
    assert sum((r.actual for r in by_project), D(0)) == row.actual
    assert sum((r.open_commitments for r in by_project), D(0)) == row.open_commitments


@SETTINGS
@given(definition=DEFINITIONS, steps=st.integers(5, 50), data=st.data())
def test_random_pool_commands_keep_the_invariants_and_tie_out(
    definition: lg.DefineBudgetPool, steps: int, data: st.DataObject
) -> None:
    state, outcome = attempt(definition, None)
    assert outcome is None
    model = PoolModel(definition.amount, definition.thresholds)
    raised: list[FrozenModel] = []
    for _ in range(steps):
        command = next_command(data, model)
        before = (model.reached(), model.overspent())
        state, outcome = attempt(command, state)
        assert outcome == model.expect(command), command
        if outcome is None:
            model.apply(command)
        check_pool_figures(state, model)
        state, events = settle(state, pool_threshold_events)
        after = (model.reached(), model.overspent())
        # Exactly the crossings of this step, each once, naming the figures.
        assert {e.threshold_percent for e in events if isinstance(e, lg.PoolThresholdCrossed)} == (
            after[0] - before[0]
        )
        assert {e.threshold_percent for e in events if isinstance(e, lg.PoolThresholdCleared)} == (
            before[0] - after[0]
        )
        assert {e.project_id for e in events if isinstance(e, lg.ProjectOverspent)} == (
            after[1] - before[1]
        )
        assert {e.project_id for e in events if isinstance(e, lg.ProjectOverspendCleared)} == (
            before[1] - after[1]
        )
        assert len(events) == len(after[0] ^ before[0]) + len(after[1] ^ before[1])
        for event in events:
            if isinstance(event, lg.PoolThresholdCrossed | lg.PoolThresholdCleared):
                assert (event.consumed, event.amount) == (model.actual + model.open, model.amount)
        assert state.raised_thresholds == after[0]
        assert state.overspent == after[1]
        raised += events
    assert_alternating(raised)


def assert_alternating(events: list[FrozenModel]) -> None:
    """Per threshold: raised, cleared, raised, ... never raised twice in a row."""
    last: dict[tuple[str, Any], bool] = {}
    for event in events:
        match event:
            case lg.PoolThresholdCrossed() | lg.PoolThresholdCleared():
                key: tuple[str, Any] = ("pool", event.threshold_percent)
                up = isinstance(event, lg.PoolThresholdCrossed)
            case lg.ProjectOverspent() | lg.ProjectOverspendCleared():
                key, up = ("project", event.project_id), isinstance(event, lg.ProjectOverspent)
            case lg.RoleOverAllocated() | lg.RoleOverAllocationCleared():
                key = ("role", (event.role, event.period))
                up = isinstance(event, lg.RoleOverAllocated)
            case _:
                raise AssertionError(event)
        assert last.get(key, False) != up, f"{type(event).__name__} twice for {key}"
        last[key] = up


# --- capacity -------------------------------------------------------------------------------

ROLES = st.sampled_from(["dev", "ops"])
CAPACITY_MONTHS = ("2025-04", "2025-05")
quantity = st.decimals(
    min_value=D(0), max_value=D(12), places=1, allow_nan=False, allow_infinity=False
)


@st.composite
def capacities(draw: st.DrawFn) -> lg.SetCapacity:
    amount, role = draw(quantity), draw(ROLES)
    usual, other = ("fte", "hours") if role == "dev" else ("hours", "fte")
    return lg.SetCapacity(
        role=role,
        period=draw(st.sampled_from(CAPACITY_MONTHS)),
        amount=amount,
        unit=draw(st.sampled_from([usual] * 7 + [other])),
        time_off=draw(st.sampled_from([D(0), amount / 4, amount])).quantize(D("0.01")),
    )


CAPACITY_STEPS: st.SearchStrategy[Command] = st.one_of(
    capacities(),
    st.builds(
        lg.AssignDemand,
        role=ROLES,
        project_id=projects,
        period=st.sampled_from(CAPACITY_MONTHS),
        amount=st.sampled_from([D(0)] + [D(v) for v in range(1, 9)]) | quantity,
    ),
    st.builds(
        lg.RecordActualHours,
        role=ROLES,
        project_id=projects,
        period=st.sampled_from(CAPACITY_MONTHS),
        hours=st.decimals(min_value=D("0.5"), max_value=D(160), places=1),
        external_ref=st.sampled_from(["T1", "T2", "T3"]),
    ),
)


@dataclass
class CapacityModel:
    tolerance: Decimal
    units: dict[str, str] = field(default_factory=dict)
    net: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    demand: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)
    hours_refs: set[tuple[str, str]] = field(default_factory=set)
    hours: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def demand_in(self, role: str, period: str) -> Decimal:
        found = (a for (r, _, m), a in self.demand.items() if (r, m) == (role, period))
        return sum(found, D(0))

    def over(self) -> set[tuple[str, str]]:
        cells = {(r, m) for r, _, m in self.demand} | set(self.net)
        limit = 1 + self.tolerance / 100
        return {
            (r, m) for r, m in cells if self.demand_in(r, m) > self.net.get((r, m), D(0)) * limit
        }

    def expect(self, c: Command) -> Outcome:
        match c:
            case lg.SetCapacity():
                if c.role in self.units and self.units[c.role] != c.unit:
                    return (ErrorCode.VALIDATION_FAILED, "unit")
            case lg.AssignDemand():
                if c.role not in self.units:
                    return (ErrorCode.NOT_FOUND, "role")
                if c.amount:
                    return fundable(c.project_id, "project_id")
                if not self.demand.get((c.role, c.project_id, c.period)):
                    return (ErrorCode.VALIDATION_FAILED, "amount")
            case lg.RecordActualHours():
                if c.role not in self.units:
                    return (ErrorCode.NOT_FOUND, "role")
                if wrong := ran(c.project_id):
                    return wrong
                if (c.role, c.external_ref) in self.hours_refs:
                    return (ErrorCode.ALREADY_EXISTS, "external_ref")
        return None

    def apply(self, c: Command) -> None:
        match c:
            case lg.SetCapacity():
                self.units[c.role] = c.unit
                self.net[(c.role, c.period)] = c.amount - c.time_off
            case lg.AssignDemand():
                self.demand[(c.role, c.project_id, c.period)] = c.amount
                if not c.amount:
                    del self.demand[(c.role, c.project_id, c.period)]
            case lg.RecordActualHours():
                self.hours_refs.add((c.role, c.external_ref))
                self.hours[(c.role, c.period)] += c.hours


def next_capacity_command(data: st.DataObject, model: CapacityModel) -> lg.CapacityCommand:
    """Mostly random; sometimes aimed at an over-allocated month (more capacity, or a
    demand removed), so that over-allocations also clear."""
    over = sorted(model.over())
    if over and data.draw(st.integers(0, 3)) == 1:
        role, period = over[data.draw(st.integers(0, len(over) - 1))]
        demands = sorted(pid for r, pid, m in model.demand if (r, m) == (role, period))
        remove: bool = data.draw(st.booleans())
        if demands and remove:
            return lg.AssignDemand(role=role, project_id=demands[0], period=period, amount=D(0))
        return lg.SetCapacity(
            role=role,
            period=period,
            amount=min(model.demand_in(role, period) * 2, D(10**9)),
            unit=model.units[role],
        )
    command = data.draw(CAPACITY_STEPS)
    assert isinstance(command, lg.CapacityCommand)
    return command


@SETTINGS
@given(
    steps=st.integers(5, 50),
    data=st.data(),
    tolerance=st.sampled_from([D(0), D(10), D("12.5")]),
    priority=st.permutations(["A", "B", "C", "R", "U"]),
)
def test_random_capacity_commands_tie_out_and_raise_over_allocation_once(
    steps: int, data: st.DataObject, tolerance: Decimal, priority: list[str]
) -> None:
    states: dict[str, CapacityState | None] = {"dev": None, "ops": None}
    model = CapacityModel(tolerance)
    raised: list[FrozenModel] = []

    def check(state: CapacityState) -> list[FrozenModel]:
        return capacity_threshold_events(state, tolerance)

    for _ in range(steps):
        command = next_capacity_command(data, model)
        before = model.over()
        state, outcome = attempt(command, states[command.role])
        assert outcome == model.expect(command), command
        if outcome is None:
            model.apply(command)
        events: list[FrozenModel] = []
        if state is not None:
            assert capacity_tie_out_problems(state) == []
            state, events = settle(state, check)
        states[command.role] = state
        after = model.over()
        assert {
            (e.role, e.period) for e in events if isinstance(e, lg.RoleOverAllocated)
        } == after - before
        assert {
            (e.role, e.period) for e in events if isinstance(e, lg.RoleOverAllocationCleared)
        } == before - after
        raised += events
    assert_alternating(raised)
    roles = [s for s in states.values() if s is not None]
    report = capacity_report(roles, tolerance)
    # A cell for every month of every role with capacity, demand or hours: no other.
    months = set(model.net) | {(r, m) for r, _, m in model.demand} | set(model.hours)
    assert [(c.role, c.period) for c in report] == sorted(months)
    for cell in report:
        at = (cell.role, cell.period)
        assert cell.demand == model.demand_in(*at)
        assert cell.demand_by_project == {
            pid: a for (r, pid, m), a in sorted(model.demand.items()) if (r, m) == at
        }
        assert cell.actual_hours == model.hours.get(at, D(0))
        assert sum(cell.demand_by_project.values(), D(0)) == cell.demand
        assert cell.available == cell.net_capacity - cell.demand
        assert cell.over_allocated == ((cell.role, cell.period) in model.over())
    check_staffing(roles, priority)


def check_staffing(roles: list[CapacityState], priority: list[str]) -> None:
    plan = staffing_plan(roles, priority)
    decided = [*plan.staffed, *(u.project_id for u in plan.unstaffed)]
    assert sorted(decided) == sorted(priority), "each project decided once"
    assert list(plan.staffed) == [pid for pid in priority if pid in plan.staffed]
    assert all(left >= 0 for left in plan.available.values()), "never staffed beyond capacity"
    needs: dict[str, dict[tuple[str, str], Decimal]] = defaultdict(dict)
    for state in roles:
        for (project_id, period), amount in state.demand.items():
            needs[project_id][(state.role, period)] = amount
    # What is left is the net capacity less exactly what the staffed projects took.
    for state in roles:
        for period in state.periods():
            taken = sum((needs[pid].get((state.role, period), D(0)) for pid in plan.staffed), D(0))
            assert plan.available[(state.role, period)] == state.net_capacity(period) - taken
    for unstaffed in plan.unstaffed:
        assert unstaffed.shortfalls, "an unstaffed project names what it lacks"
        # Capacity only shrinks as projects are staffed: still short at the end.
        assert any(s.needed > plan.available[(s.role, s.period)] for s in unstaffed.shortfalls)


# --- the immutable collections the states grow in ----------------------------------------


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from("abcdefghij"), st.integers(0, 9)), max_size=60))
def test_ref_sets_and_layered_maps_behave_as_sets_and_dicts(ops: list[tuple[str, int]]) -> None:
    refs, mapping = RefSet(), LayeredMap[str, int]()
    plain_set: set[str] = set()
    plain_dict: dict[str, int] = {}
    for key, value in ops:
        before_refs, before_map = refs, mapping
        frozen_set, frozen_dict = set(plain_set), dict(plain_dict)
        refs, mapping = refs.add(key), mapping.set(key, value)
        plain_set.add(key)
        plain_dict[key] = value
        assert set(refs) == plain_set and len(refs) == len(plain_set)
        assert dict(mapping) == plain_dict and len(mapping) == len(plain_dict)
        assert list(mapping.items()) == list(plain_dict.items())
        assert list(mapping.values()) == list(plain_dict.values())
        assert all(k in refs and k in mapping for k in plain_set)
        assert "z" not in refs and "z" not in mapping and mapping.get("z") is None
        # The earlier versions are untouched.
        assert set(before_refs) == frozen_set
        assert dict(before_map) == frozen_dict


@SETTINGS
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from("abcdefghij"), st.integers(0, 9)), max_size=80
    )
)
def test_layered_maps_remove_as_dicts_do(ops: list[tuple[bool, str, int]]) -> None:
    """Removals hide the earlier values of a key at any depth, and the versions before a
    removal keep them; the order is a dict's while nothing was removed."""
    mapping, plain = LayeredMap[str, int](), dict[str, int]()
    versions: list[tuple[LayeredMap[str, int], dict[str, int]]] = []
    removed_any = False
    for remove, key, value in ops:
        if remove:
            removed_any |= key in plain
            mapping = mapping.remove(key)
            plain.pop(key, None)
        else:
            mapping = mapping.set(key, value)
            plain[key] = value
        versions.append((mapping, dict(plain)))
        assert dict(mapping) == plain and len(mapping) == len(plain)
        assert list(mapping.items()) == [(k, mapping[k]) for k in mapping]
        assert list(mapping.values()) == [mapping[k] for k in mapping]
        assert dict(mapping.items()) == plain
        for k in "abcdefghijz":
            assert (k in mapping) == (k in plain)
            assert mapping.get(k) == plain.get(k) and mapping.get(k, -1) == plain.get(k, -1)
        if not removed_any:
            assert list(mapping) == list(plain)
    for version, then in versions:
        assert dict(version) == then
