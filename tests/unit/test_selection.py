"""Portfolio selection, pure: the MILP against brute force on small random instances, why
greedy by value/cost is not enough, the reasons for every miss, infeasible mandatory sets,
dependency cycles, and the efficient frontier; then selection on the ledger's capacity
(net of running projects), a scenario's overrides, and the solver's time limit."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from contracts import ledger as lg
from contracts import prioritization as pr
from contracts import projects as p
from domain.prioritization import PortfolioView, decide_selection, frontier
from domain.prioritization.capacity import HOLDING
from domain.prioritization.ranking import solver_note
from domain.prioritization.selection import (
    TOTAL,
    Bucket,
    Cell,
    SelectionCandidate,
    SelectionError,
    efficient_frontier,
    select,
    synthetic_instance,
)
from tests.unit.test_report import Log, project, proposed

CAPEX: Bucket = ("2027", "capex")
OPEX: Bucket = ("2027", "opex")
DEV: Cell = ("dev", "2027-01")
OPS: Cell = ("ops", "2027-01")


def item(
    pid: str,
    value: float,
    capex: int | str = 0,
    *,
    opex: int | str = 0,
    dev: float = 0.0,
    ops: float = 0.0,
    mandatory: bool = False,
    excluded: bool = False,
    deps: Sequence[str] = (),
) -> SelectionCandidate:
    return SelectionCandidate(
        project_id=pid,
        value=value,
        costs={CAPEX: Decimal(capex), OPEX: Decimal(opex)},
        demand={DEV: dev, OPS: ops},
        mandatory=mandatory,
        excluded=excluded,
        dependencies=tuple(deps),
    )


# --- brute force -----------------------------------------------------------------------


def feasible(
    chosen: set[str],
    candidates: Sequence[SelectionCandidate],
    budgets: Mapping[Bucket, Decimal],
    capacity: Mapping[Cell, float],
) -> bool:
    for c in candidates:
        if c.mandatory and c.project_id not in chosen:
            return False
        if c.project_id in chosen and (c.excluded or any(d not in chosen for d in c.dependencies)):
            return False
    picked = [c for c in candidates if c.project_id in chosen]
    for b, limit in budgets.items():
        if sum((c.costs.get(b, Decimal(0)) for c in picked), Decimal(0)) > limit:
            return False
    return all(
        sum(c.demand.get(cell, 0.0) for c in picked) <= limit + 1e-9
        for cell, limit in capacity.items()
    )


def brute_force(
    candidates: Sequence[SelectionCandidate],
    budgets: Mapping[Bucket, Decimal],
    capacity: Mapping[Cell, float],
) -> float | None:
    """The best total value over every subset, None when no subset is feasible."""
    best: float | None = None
    ids = [c.project_id for c in candidates]
    value = {c.project_id: c.value for c in candidates}
    for size in range(len(ids) + 1):
        for subset in itertools.combinations(ids, size):
            chosen = set(subset)
            if feasible(chosen, candidates, budgets, capacity):
                total = sum(value[p] for p in chosen)
                best = total if best is None else max(best, total)
    return best


def random_instance(
    seed: int,
) -> tuple[list[SelectionCandidate], dict[Bucket, Decimal], dict[Cell, float]]:
    rng = random.Random(seed)
    n = rng.randint(1, 11)
    candidates = []
    for i in range(n):
        earlier = [f"P{j}" for j in range(i)]
        deps = [d for d in earlier if rng.random() < 0.15]
        roll = rng.random()
        candidates.append(
            item(
                f"P{i}",
                round(rng.uniform(-0.5, 10), 3),
                rng.randint(0, 40),
                opex=rng.randint(0, 20),
                dev=float(rng.randint(0, 4)),
                ops=rng.choice([0.0, 0.5, 1.5, 2.0]),
                mandatory=roll < 0.1,
                excluded=0.1 <= roll < 0.2,
                deps=deps,
            )
        )
    total_capex = sum(c.costs[CAPEX] for c in candidates)
    total_opex = sum(c.costs[OPEX] for c in candidates)
    budgets = {
        CAPEX: Decimal(int(total_capex * Decimal(rng.uniform(0.2, 0.8)))),
        OPEX: Decimal(int(total_opex * Decimal(rng.uniform(0.3, 0.9)))),
    }
    capacity = {DEV: float(rng.randint(2, 10)), OPS: rng.choice([1.0, 2.5, 4.0])}
    rng.shuffle(candidates)  # the result must not depend on the input order
    return candidates, budgets, capacity


@pytest.mark.parametrize("seed", range(40))
def test_milp_matches_brute_force(seed: int) -> None:
    candidates, budgets, capacity = random_instance(seed)
    best = brute_force(candidates, budgets, capacity)
    if best is None:
        with pytest.raises(SelectionError, match="mandatory"):
            select(candidates, budgets, capacity)
        return
    result = select(candidates, budgets, capacity)
    assert result.status == "optimal"
    assert result.total_value == pytest.approx(best, abs=1e-6)
    assert feasible(set(result.selected), candidates, budgets, capacity)
    assert list(result.selected) == sorted(result.selected)
    by_id = {c.project_id: c for c in candidates}
    assert set(result.not_selected) == set(by_id) - set(result.selected)
    for pid, reason in result.not_selected.items():
        c = by_id[pid]
        if reason == "excluded":
            assert c.excluded
        elif reason.startswith("dependency"):
            assert any(d not in result.selected for d in c.dependencies)
        elif reason.startswith(("budget", "capacity")):
            assert not feasible(set(result.selected) | {pid}, candidates, budgets, capacity)
        else:
            # At the proven optimum anything that still fits adds nothing.
            assert reason == "no positive value"
            assert c.value <= 0


@pytest.mark.parametrize("seed", range(8))
def test_frontier_matches_brute_force(seed: int) -> None:
    candidates, _, _ = random_instance(100 + seed)
    total = sum((c.total_cost() for c in candidates), Decimal(0))
    levels = [total * k / 4 for k in range(5)]
    points = efficient_frontier(candidates, levels)
    assert [p.budget for p in points] == levels
    for point in points:
        single = [
            SelectionCandidate(
                c.project_id,
                c.value,
                {TOTAL: c.total_cost()},
                mandatory=c.mandatory,
                excluded=c.excluded,
                dependencies=c.dependencies,
            )
            for c in candidates
        ]
        best = brute_force(single, {TOTAL: point.budget}, {})
        if best is None:
            assert point.status == "infeasible"
            assert point.problem is not None and "mandatory" in point.problem
            assert point.value is None
        else:
            assert point.status == "optimal"
            assert point.value == pytest.approx(best, abs=1e-6)
            assert point.cost is not None and point.cost <= point.budget
    values = [p.value for p in points if p.value is not None]
    assert values == sorted(values)  # more budget never buys less


# --- greedy is not optimal -------------------------------------------------------------


def greedy_by_ratio(candidates: Sequence[SelectionCandidate], budget: Decimal) -> float:
    spent, value = Decimal(0), 0.0
    for c in sorted(candidates, key=lambda c: -c.value / float(c.costs[CAPEX])):
        if spent + c.costs[CAPEX] <= budget:
            spent += c.costs[CAPEX]
            value += c.value
    return value


def test_greedy_by_value_over_cost_is_worse_than_the_milp() -> None:
    candidates = [item("A", 7, 6), item("B", 5, 5), item("C", 5, 5)]
    budgets = {CAPEX: Decimal(10)}
    # Greedy takes A (ratio 1.17) and has 4 left, too little for B or C.
    assert greedy_by_ratio(candidates, Decimal(10)) == 7
    result = select(candidates, budgets)
    assert result.selected == ("B", "C")
    assert result.total_value == 10
    assert result.not_selected == {"A": "budget 2027/capex"}


# --- reasons, usage --------------------------------------------------------------------


def test_every_miss_has_its_reason() -> None:
    candidates = [
        item("P1", 10, 60),
        item("P2", 9, 50),
        item("P3", 20, 1, excluded=True),
        item("P4", 20, 1, deps=["P3"]),
        item("P5", 5, 10, dev=3),
        item("P6", 20, 1, deps=["X"]),
        item("P7", 3, 20, dev=1, deps=["Y"]),
        item("P8", -1, 1),
    ]
    result = select(candidates, {CAPEX: Decimal(100)}, {DEV: 2.0}, satisfied=["Y"])
    assert result.status == "optimal"
    assert result.mip_gap == 0
    assert result.selected == ("P1", "P7")
    assert result.total_value == 13
    assert result.not_selected == {
        "P2": "budget 2027/capex",
        "P3": "excluded",
        "P4": "dependency P3 not selected",
        "P5": "capacity dev/2027-01",
        "P6": "dependency X not selected",
        "P8": "no positive value",
    }
    assert result.cost_by_bucket == {CAPEX: Decimal(80), OPEX: Decimal(0)}
    assert result.capacity_use == {DEV: 1.0, OPS: 0.0}


def test_several_overflowing_rows_are_all_named() -> None:
    candidates = [item("A", 10, 60, opex=10, dev=2), item("B", 1, 50, opex=20, dev=1)]
    result = select(candidates, {CAPEX: Decimal(100), OPEX: Decimal(25)}, {DEV: 2.0})
    assert result.selected == ("A",)
    assert result.not_selected == {"B": "budget 2027/capex; budget 2027/opex; capacity dev/2027-01"}


def test_money_is_exact_at_the_limit() -> None:
    candidates = [item("A", 1, "33.33"), item("B", 1, "33.33"), item("C", 1, "33.34")]
    result = select(candidates, {CAPEX: Decimal("100.00")})
    assert result.selected == ("A", "B", "C")
    assert result.cost_by_bucket[CAPEX] == Decimal("100.00")
    tight = select(candidates, {CAPEX: Decimal("99.99")})
    assert len(tight.selected) == 2


def test_dependency_pulls_in_a_worthless_prerequisite_only_when_it_pays() -> None:
    worth_it = [item("A", 10, 10, deps=["B"]), item("B", -3, 10)]
    assert select(worth_it, {CAPEX: Decimal(20)}).selected == ("A", "B")
    not_worth_it = [item("A", 2, 10, deps=["B"]), item("B", -3, 10)]
    result = select(not_worth_it, {CAPEX: Decimal(20)})
    assert result.selected == ()
    assert result.not_selected == {"A": "dependency B not selected", "B": "no positive value"}


def test_costs_and_demand_outside_the_budgets_and_capacity_are_unconstrained() -> None:
    result = select([item("A", 1, 10**9, dev=99)], {OPEX: Decimal(0)})
    assert result.selected == ("A",)


def test_no_candidates() -> None:
    result = select([], {CAPEX: Decimal(10)}, {DEV: 1.0})
    assert result.selected == ()
    assert result.cost_by_bucket == {CAPEX: Decimal(0)}
    assert result.capacity_use == {DEV: 0.0}


def test_time_limit_is_an_option_and_the_status_is_reported() -> None:
    candidates, budgets, capacity = random_instance(3)
    result = select(candidates, budgets, capacity, time_limit=5.0)
    assert result.status == "optimal"
    assert result.solver_message


# --- infeasible mandatory sets, cycles, bad input ---------------------------------------


def test_mandatory_overflow_names_the_smallest_conflicting_set() -> None:
    candidates = [
        item("M1", 1, 60, mandatory=True),
        item("M2", 1, 50, mandatory=True),
        item("M3", 1, 10, mandatory=True),
        item("F", 1, 5),
    ]
    with pytest.raises(SelectionError) as caught:
        select(candidates, {CAPEX: Decimal(100)})
    assert caught.value.conflict == ("M1", "M2", "budget 2027/capex")
    assert "mandatory M1, M2 overflow budget 2027/capex: need 110, have 100" in str(caught.value)


def test_mandatory_overflow_counts_its_dependencies() -> None:
    candidates = [item("M", 1, 30, mandatory=True, deps=["D"]), item("D", 1, 80)]
    with pytest.raises(SelectionError, match=r"mandatory M \(with their dependencies D\)") as c:
        select(candidates, {CAPEX: Decimal(100)})
    assert c.value.conflict == ("M", "D", "budget 2027/capex")


def test_mandatory_overflow_of_capacity() -> None:
    candidates = [item("M1", 1, dev=1.5, mandatory=True), item("M2", 1, dev=1, mandatory=True)]
    with pytest.raises(SelectionError, match="overflow capacity dev/2027-01") as caught:
        select(candidates, {}, {DEV: 2.0})
    assert caught.value.conflict == ("M1", "M2", "capacity dev/2027-01")


def test_mandatory_needing_an_excluded_project() -> None:
    candidates = [
        item("M", 1, mandatory=True, deps=["A"]),
        item("A", 1, deps=["X"]),
        item("X", 1, excluded=True),
    ]
    with pytest.raises(SelectionError, match="M -> A -> X, and X is excluded") as caught:
        select(candidates, {})
    assert caught.value.conflict == ("M", "A", "X")


def test_mandatory_needing_an_unknown_project() -> None:
    with pytest.raises(SelectionError, match="M -> Q, and Q is neither a candidate"):
        select([item("M", 1, mandatory=True, deps=["Q"])], {})
    # ... unless it is already delivered.
    assert select([item("M", 1, mandatory=True, deps=["Q"])], {}, satisfied=["Q"]).selected == (
        "M",
    )


def test_mandatory_and_excluded_at_once() -> None:
    with pytest.raises(SelectionError, match="both mandatory and excluded"):
        item("M", 1, mandatory=True, excluded=True)


def test_dependency_cycle_is_named() -> None:
    candidates = [item("A", 1, deps=["B"]), item("B", 1, deps=["C"]), item("C", 1, deps=["A"])]
    with pytest.raises(SelectionError, match="dependency cycle: A -> B -> C -> A") as caught:
        select(candidates, {CAPEX: Decimal(10)})
    assert caught.value.conflict == ("A", "B", "C")
    with pytest.raises(SelectionError, match="dependency cycle: S -> S"):
        select([item("S", 1, deps=["S"])], {})
    with pytest.raises(SelectionError, match="dependency cycle"):
        efficient_frontier(candidates, [Decimal(10)])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: select([item("A", 1), item("A", 2)], {}), "listed more than once: A"),
        (lambda: item("A", 1, -5), "cost in 2027/capex must be >= 0"),
        (lambda: item("A", 1, dev=-1), "demand in dev/2027-01 must be >= 0"),
        (lambda: item("A", float("inf")), "value must be finite"),
        (lambda: select([], {CAPEX: Decimal(-1)}), "budget 2027/capex must be >= 0"),
        (lambda: select([], {}, {DEV: -1.0}), "capacity dev/2027-01 must be >= 0"),
    ],
)
def test_bad_input_is_refused(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(SelectionError, match=message):
        make()


# --- frontier --------------------------------------------------------------------------


def test_frontier_reports_infeasible_levels_instead_of_raising() -> None:
    candidates = [item("M", 1, 30, mandatory=True), item("A", 5, 20), item("B", 4, 20)]
    points = efficient_frontier(candidates, [Decimal(10), Decimal(50), Decimal(70)])
    assert [(p.status, p.value, p.selected) for p in points] == [
        ("infeasible", None, ()),
        ("optimal", 6, ("A", "M")),
        ("optimal", 10, ("A", "B", "M")),
    ]
    assert points[0].problem == "mandatory M overflow budget total: need 30, have 10"
    assert points[1].cost == Decimal(50)


def test_frontier_sums_every_bucket_into_one() -> None:
    points = efficient_frontier([item("A", 1, 10, opex=5)], [Decimal(14), Decimal(15)])
    assert [p.selected for p in points] == [(), ("A",)]


# --- the synthetic benchmark instance --------------------------------------------------


def test_synthetic_instance_is_deterministic_and_solvable() -> None:
    first = synthetic_instance(300, roles=3, periods=6, seed=7)
    assert first == synthetic_instance(300, roles=3, periods=6, seed=7)
    assert first != synthetic_instance(300, roles=3, periods=6, seed=8)
    assert len(first.candidates) == 300
    assert {cell[0] for cell in first.capacity} <= {"role1", "role2", "role3"}
    # Many rows for few items: proving optimality exactly takes long, so accept 2 %.
    result = select(first.candidates, first.budgets, first.capacity, mip_rel_gap=0.02)
    assert result.status == "optimal"
    assert result.mip_gap <= 0.02
    assert feasible(set(result.selected), first.candidates, first.budgets, first.capacity)
    again = select(first.candidates, first.budgets, first.capacity, mip_rel_gap=0.02)
    assert again == result


# --- selection on the ledger's capacity (domain.prioritization.capacity) -----------------

MARCH = "2027-03"


class Ledger:
    """A log of proposals (scored on business value alone), statuses, capacity and demand."""

    def __init__(self) -> None:
        self.log = Log()
        self.log.add(
            (pr.SCORING_MODEL, "default"),
            pr.ScoringModelConfigured(
                model_id="default",
                method=pr.ScoringMethod.WEIGHTED,
                weights={"value": 1.0},
                consistency_ratio=None,
                rationale="value only",
            ),
        )
        # The least valuable project scores 0 and anchors the scale for the others.
        self.propose("FLOOR", 1)

    def propose(self, pid: str, business_value: int) -> Ledger:
        scoring = p.ScoringInputs(business_value=business_value)
        self.log.add(project(pid), proposed(pid, 100_000, 0, {}, scoring=scoring))
        return self

    def status(self, pid: str, *events: object) -> Ledger:
        for event in events:
            self.log.add(project(pid), event)  # type: ignore[arg-type]
        return self

    def start(self, pid: str) -> Ledger:
        return self.status(
            pid,
            p.ProjectSubmittedForReview(project_id=pid),
            p.ProjectApproved(project_id=pid, rationale="go ahead"),
            p.ProjectStarted(project_id=pid, started_on=date(2027, 1, 4)),
        )

    def capacity(self, role: str, period: str, amount: str, time_off: str = "0") -> Ledger:
        event = lg.CapacitySet(
            role=role,
            period=period,
            amount=Decimal(amount),
            unit=lg.CapacityUnit.FTE,
            time_off=Decimal(time_off),
        )
        self.log.add((lg.CAPACITY, role), event)
        return self

    def demand(self, role: str, pid: str, period: str, amount: str, previous: str = "0") -> Ledger:
        event = lg.DemandAssigned(
            role=role,
            project_id=pid,
            period=period,
            amount=Decimal(amount),
            previous_amount=Decimal(previous),
            unit=lg.CapacityUnit.FTE,
        )
        self.log.add((lg.CAPACITY, role), event)
        return self

    def view(self) -> PortfolioView:
        view = PortfolioView()
        for event in self.log.events:
            view.apply(event)
        return view


def march_team() -> Ledger:
    """Developers in March: 10 FTE, 2 off, 4 held by RUN (in progress); A (value 8) and B
    (value 5) need 3 each, so only A fits in the 4 left."""
    return (
        Ledger()
        .propose("RUN", 3)
        .start("RUN")
        .propose("A", 8)
        .propose("B", 5)
        .capacity("developer", MARCH, "10", time_off="2")
        .demand("developer", "RUN", MARCH, "4")
        .demand("developer", "A", MARCH, "3")
        .demand("developer", "B", MARCH, "3")
    )


def reasons(outcome: pr.SelectionOutcome) -> dict[str, str]:
    return {n.project_id: n.reason for n in outcome.not_selected}


def test_the_ledger_capacity_net_of_running_projects_leaves_a_candidate_out() -> None:
    outcome = decide_selection(march_team().view(), pr.Scenario())
    assert outcome.ledger_capacity is True
    assert outcome.capacity == {"developer/2027-03": 4.0}
    assert outcome.selected == ("A",)
    assert reasons(outcome)["B"] == "capacity developer/2027-03"
    assert outcome.capacity_use == {"developer/2027-03": 3.0}
    assert "RUN" not in outcome.candidates  # running: holds capacity, is not a candidate
    assert outcome.solver_status == "optimal" and outcome.note is None


def test_which_statuses_hold_capacity() -> None:
    assert {p.ProjectStatus.IN_PROGRESS, p.ProjectStatus.ON_HOLD} == HOLDING
    view = march_team().view()
    assert view.ledger_capacity().held == {("developer", MARCH): 4.0}
    # On hold: still holds its people.
    held = march_team().status(
        "RUN",
        p.ProjectPutOnHold(project_id="RUN", reason="wait", held_from=p.ProjectStatus.IN_PROGRESS),
    )
    assert decide_selection(held.view(), pr.Scenario()).selected == ("A",)
    # Completed or cancelled: its demand is free again, and both candidates fit.
    for closing in (
        p.ProjectCompleted(project_id="RUN", completed_on=date(2027, 2, 1)),
        p.ProjectCancelled(
            project_id="RUN", reason="stopped", cancelled_from=p.ProjectStatus.IN_PROGRESS
        ),
    ):
        freed = march_team().status("RUN", closing).view()
        assert freed.ledger_capacity().held == {}
        assert decide_selection(freed, pr.Scenario()).selected == ("A", "B")
    # Approved but not started: a candidate, so its demand is its own, not held.
    approved = march_team().status(
        "B",
        p.ProjectSubmittedForReview(project_id="B"),
        p.ProjectApproved(project_id="B", rationale="ok"),
    )
    picture = approved.view().ledger_capacity()
    assert picture.available == {("developer", MARCH): 4.0}
    assert picture.demand["B"] == {("developer", MARCH): 3.0}


def test_a_scenario_overrides_single_cells_or_ignores_the_ledger() -> None:
    view = march_team().view()
    more = pr.Scenario(capacity={"developer/2027-03": 6})
    assert decide_selection(view, more).selected == ("A", "B")
    lighter = pr.Scenario(demand={"B": {"developer/2027-03": 1}})
    assert decide_selection(view, lighter).selected == ("A", "B")
    removed = pr.Scenario(demand={"A": {"developer/2027-03": 0}})
    outcome = decide_selection(view, removed)
    assert outcome.selected == ("A", "B") and outcome.capacity_use["developer/2027-03"] == 3.0
    # April has no capacity line for developers: a demand typed there has none to give.
    heavier = pr.Scenario(demand={"A": {"developer/2027-04": 1}})
    outcome = decide_selection(view, heavier)
    assert outcome.selected == ("B",)
    assert reasons(outcome)["A"] == "capacity developer/2027-03; capacity developer/2027-04"
    assert decide_selection(view, pr.Scenario(demand={"A": {"tester/2027-03": 9}})).selected == (
        "A",
    )  # a role the ledger does not plan bounds nothing unless the scenario types it
    typed_only = decide_selection(view, pr.Scenario(ledger=False))
    assert typed_only.selected == ("A", "B") and typed_only.capacity == {}
    assert typed_only.ledger_capacity is False


def test_months_without_a_capacity_line_have_none_to_give() -> None:
    """Demand in a month the role has no capacity for: the ledger calls it over-allocated,
    and selection leaves the candidate out for that cell."""
    view = march_team().demand("developer", "A", "2027-04", "1").view()
    outcome = decide_selection(view, pr.Scenario())
    assert outcome.capacity["developer/2027-04"] == 0.0
    assert "capacity developer/2027-04" in reasons(outcome)["A"]
    assert outcome.selected == ("B",)


def test_an_over_allocated_month_leaves_nothing_not_less_than_nothing() -> None:
    view = march_team().demand("developer", "RUN", MARCH, "12", previous="4").view()
    outcome = decide_selection(view, pr.Scenario())
    assert outcome.capacity == {"developer/2027-03": 0.0}
    assert outcome.selected == ()


def test_the_fold_is_the_ledgers_and_keeps_its_own_running_totals() -> None:
    ledger = march_team()
    ledger.demand("developer", "B", MARCH, "0", previous="3")  # removed
    ledger.demand("developer", "A", MARCH, "2", previous="99")  # a wrong previous figure
    ledger.demand("tester", "A", MARCH, "1")  # a role without capacity: not folded
    capacity = ledger.view().capacity
    state = capacity.cells[("developer", MARCH)]
    assert dict(state.demand) == {("RUN", MARCH): Decimal(4), ("A", MARCH): Decimal(2)}
    assert state.demand_in(MARCH) == Decimal(6)
    assert state.net_capacity(MARCH) == Decimal(8)
    assert not capacity.knows("tester") and ("tester", MARCH) not in capacity.cells
    # Demand in a month without a capacity line: a cell with no capacity.
    ledger.demand("developer", "A", "2027-04", "1")
    april = ledger.view().capacity.cells[("developer", "2027-04")]
    assert april.net_capacity("2027-04") == 0 and april.demand_in("2027-04") == 1


def test_the_frontier_stays_within_the_ledgers_capacity() -> None:
    view = march_team().view()
    query = pr.FrontierQuery(budget_from=Decimal(0), budget_to=Decimal(1_000_000), steps=3)
    top = frontier(view, query).points[-1]
    assert top.selected == ("A",) and top.mip_gap == 0.0 and top.note is None
    budget_only = frontier(view, query.model_copy(update={"ledger": False})).points[-1]
    assert budget_only.selected == ("A", "B")


def test_at_the_time_limit_the_answer_says_so_with_its_proven_gap() -> None:
    """Three candidates whose LP relaxation is fractional: with no time at all the solver
    stops at the greedy selection and the answer names the limit and the gap."""
    ledger = (
        Ledger()
        .propose("A", 20)
        .propose("B", 13)
        .propose("C", 8)
        .capacity("developer", MARCH, "10.5")
        .demand("developer", "A", MARCH, "6")
        .demand("developer", "B", MARCH, "5")
        .demand("developer", "C", MARCH, "5")
    )
    view = ledger.view()
    outcome = decide_selection(view, pr.Scenario(), time_limit=1e-9)
    assert outcome.solver_status == "time_limit"
    assert outcome.mip_gap > 0 and outcome.time_limit_seconds == 1e-9
    assert outcome.note is not None and "time limit" in outcome.note
    assert f"{outcome.mip_gap * 100:.2f}%" in outcome.note
    solved = decide_selection(view, pr.Scenario(), time_limit=10)
    assert solved.solver_status == "optimal" and solved.note is None
    assert solved.total_value >= outcome.total_value
    assert solver_note("optimal", 0.0, 2.0) is None


def test_an_outcome_recorded_before_the_ledger_was_read_still_folds() -> None:
    older = {
        "scenario": {"name": "baseline", "budgets": {"2027/capex": "100"}},
        "model_id": "default",
        "model_version": 1,
        "computed_at_position": 7,
        "candidates": ["P-1"],
        "selected": [],
        "total_value": 0.0,
        "cost_by_bucket": {"2027/capex": "0"},
        "capacity_use": {},
        "not_selected": [{"project_id": "P-1", "reason": "budget 2027/capex"}],
        "solver_status": "optimal",
    }
    decided = pr.SelectionDecided.model_validate({"outcome": older, "rationale": "round 1"})
    assert decided.outcome.ledger_capacity is False
    assert decided.outcome.capacity == {} and decided.outcome.note is None
    assert decided.outcome.mip_gap == 0.0


def test_the_time_limit_bounds_the_whole_answer_not_only_the_solver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The solver is given the limit less a reserve and less what came before it, so the
    answer (explanations included) is within the limit; every attempt shares one budget."""
    from domain.prioritization import milp

    given: list[float | None] = []
    optimise = milp.optimise

    def spy(*args: Any, **kwargs: Any) -> milp.Solution:
        given.append(kwargs["time_limit"])
        return optimise(*args, **kwargs)

    monkeypatch.setattr(milp, "optimise", spy)
    generated = synthetic_instance(300, 2, 6, seed=3)
    select(generated.candidates, generated.budgets, generated.capacity, time_limit=2.0)
    assert given and all(x is not None and 0 <= x <= 2.0 * (1 - milp.TIME_RESERVE) for x in given)
    given.clear()
    select(generated.candidates, generated.budgets, generated.capacity, time_limit=None)
    assert given == [None]


def test_time_left_keeps_the_reserve_and_never_goes_below_zero() -> None:
    from domain.prioritization.milp import TIME_RESERVE, time_left

    now = time.perf_counter()
    left = time_left(10.0, now)
    assert left is not None and left <= 10.0 * (1 - TIME_RESERVE)
    assert time_left(1.0, now - 60) == 0.0
    assert time_left(None, now) is None
    no_reserve = time_left(10.0, now, reserve=0.0)
    assert no_reserve is not None and left < no_reserve <= 10.0
