"""The ledger's report figures against worked examples computed by hand.

Each example is built the way the live system builds it: commands decided and folded by
the pure domain. The figures in the comments are the hand computation.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from contracts import ledger as lg
from contracts import projects as p
from contracts.base import AggregateKey, Command
from domain.deciders import decide, evolve
from domain.ledger import (
    BudgetFigures,
    CapacityState,
    Grouping,
    PoolState,
    Shortfall,
    Unstaffed,
    budget_report,
    capacity_report,
    capacity_tie_out_problems,
    fiscal_label,
    months_between,
    over_allocated_cells,
    percent,
    pool_threshold_events,
    pool_tie_out_problems,
    staffing_plan,
)
from domain.projects import ProjectState

D = Decimal
NOW = datetime(2025, 9, 1, tzinfo=UTC)
Status = p.ProjectStatus


def _project(status: Status) -> ProjectState:
    return ProjectState("x", status, 3, date(2025, 1, 1), date(2026, 12, 31))


REFS: dict[AggregateKey, Any] = {
    ("project", pid): _project(Status.IN_PROGRESS) for pid in ("CRM", "ERP", "IAM")
}


def run(*commands: Command) -> dict[AggregateKey, Any]:
    """Decide and fold every command in order; the states of every aggregate touched."""
    states: dict[AggregateKey, Any] = {}
    for command in commands:
        key = command.aggregate_key()
        for event in decide(command, states.get(key), NOW, REFS):
            states[key] = evolve(states.get(key), event)
    return states


def pools(states: dict[AggregateKey, Any]) -> list[PoolState]:
    return [s for s in states.values() if isinstance(s, PoolState)]


def roles(states: dict[AggregateKey, Any]) -> list[CapacityState]:
    return [s for s in states.values() if isinstance(s, CapacityState)]


def allocate(pool: str, project: str, amount: str) -> lg.AllocateBudget:
    return lg.AllocateBudget(pool_id=pool, project_id=project, amount=D(amount), rationale="plan")


def commit(pool: str, project: str, amount: str, ref: str, period: str) -> lg.RecordCommitment:
    return lg.RecordCommitment(
        pool_id=pool, project_id=project, amount=D(amount), external_ref=ref, period=period
    )


def actual(
    pool: str, project: str, amount: str, ref: str, period: str, settles: str | None = None
) -> lg.RecordActualCost:
    return lg.RecordActualCost(
        pool_id=pool,
        project_id=project,
        amount=D(amount),
        external_ref=ref,
        period=period,
        commitment_ref=settles,
        source="finance",
    )


# --- the budget example -------------------------------------------------------------------
#
# CAPEX-2025 (capex, FY2025, 1,000,000 EUR)
#   allocations: CRM 600,000, ERP 300,000, then 50,000 moved CRM -> ERP
#                => CRM 550,000, ERP 350,000, pool 900,000, unallocated 100,000
#   commitments: PO-1 CRM 200,000 (2025-03); PO-2 ERP 100,000 (2025-04);
#                licence LIC-CRM for CRM, 1,000 a month 2025-07..2025-12 = 6,000
#   actuals:     INV-1 CRM 80,000 (2025-03) settles PO-1; INV-2 CRM 20,000 (2025-04);
#                INV-3 ERP 30,000 (2025-04) settles PO-2; INV-4 CRM 1,000 (2025-07) settles
#                LIC-CRM
# OPEX-Q2 (opex, FY2025 Q2, 200,000 EUR): CRM 50,000 allocated; INV-5 CRM 10,000 (2025-05)
# OPEX-US (opex, FY2025, 100,000 USD): CRM 40,000 allocated; INV-6 CRM 5,000 (2025-06)

BUDGET = run(
    lg.DefineBudgetPool(
        pool_id="CAPEX-2025",
        name="IT capex 2025",
        fiscal_year=2025,
        category="capex",
        amount=D(1000000),
        currency="EUR",
        owner="cfo",
    ),
    lg.DefineBudgetPool(
        pool_id="OPEX-Q2",
        name="IT opex Q2",
        fiscal_year=2025,
        quarter=2,
        category="opex",
        amount=D(200000),
        currency="EUR",
        owner="cio",
    ),
    lg.DefineBudgetPool(
        pool_id="OPEX-US",
        name="US opex",
        fiscal_year=2025,
        category="opex",
        amount=D(100000),
        currency="USD",
        owner="cio-us",
    ),
    allocate("CAPEX-2025", "CRM", "600000"),
    allocate("CAPEX-2025", "ERP", "300000"),
    lg.TransferAllocation(
        pool_id="CAPEX-2025",
        from_project_id="CRM",
        to_project_id="ERP",
        amount=D(50000),
        rationale="ERP scope grew",
    ),
    commit("CAPEX-2025", "CRM", "200000", "PO-1", "2025-03"),
    commit("CAPEX-2025", "ERP", "100000", "PO-2", "2025-04"),
    lg.RecordRecurringCost(
        pool_id="CAPEX-2025",
        project_id="CRM",
        asset_id="LIC-CRM",
        description="CRM seats",
        amount_per_period=D(1000),
        first_period="2025-07",
        last_period="2025-12",
    ),
    actual("CAPEX-2025", "CRM", "80000", "INV-1", "2025-03", settles="PO-1"),
    actual("CAPEX-2025", "CRM", "20000", "INV-2", "2025-04"),
    actual("CAPEX-2025", "ERP", "30000", "INV-3", "2025-04", settles="PO-2"),
    actual("CAPEX-2025", "CRM", "1000", "INV-4", "2025-07", settles="LIC-CRM"),
    allocate("OPEX-Q2", "CRM", "50000"),
    actual("OPEX-Q2", "CRM", "10000", "INV-5", "2025-05"),
    allocate("OPEX-US", "CRM", "40000"),
    actual("OPEX-US", "CRM", "5000", "INV-6", "2025-06"),
)
CAPEX = BUDGET[("pool", "CAPEX-2025")]


def figures(report: dict[tuple[str, ...], BudgetFigures], *key: str) -> BudgetFigures:
    return report[key]


def test_pool_figures() -> None:
    row = budget_report([CAPEX], Grouping.POOL)[("CAPEX-2025",)]
    # committed 200,000 + 100,000 + 6,000; open (200,000 - 80,000) + (100,000 - 30,000)
    # + (6,000 - 1,000); actual 80,000 + 20,000 + 30,000 + 1,000.
    assert row == BudgetFigures(
        currency="EUR",
        amount=D(1000000),
        allocated=D(900000),
        committed=D(306000),
        open_commitments=D(195000),
        actual=D(131000),
        forecast_at_completion=D(326000),  # 131,000 + 195,000
        remaining=D(574000),  # 900,000 - 326,000
        unallocated=D(100000),
        burn_rate=D("43666.67"),  # 131,000 over 3 months with actuals (03, 04, 07)
        months_with_actuals=3,
        actual_by_period={"2025-03": D(80000), "2025-04": D(50000), "2025-07": D(1000)},
        committed_by_period={
            "2025-03": D(200000),
            "2025-04": D(100000),
            **{f"2025-{m:02d}": D(1000) for m in range(7, 13)},
        },
    )
    assert CAPEX.consumption_percent == D("32.60")  # 326,000 / 1,000,000


def test_pool_and_project_figures() -> None:
    report = budget_report([CAPEX], Grouping.POOL_PROJECT)
    crm = figures(report, "CAPEX-2025", "CRM")
    # CRM: allocated 550,000; committed 206,000; open 120,000 + 5,000; actual 101,000
    assert (crm.allocated, crm.committed, crm.open_commitments, crm.actual) == (
        D(550000),
        D(206000),
        D(125000),
        D(101000),
    )
    assert (crm.forecast_at_completion, crm.remaining) == (D(226000), D(324000))
    assert (crm.burn_rate, crm.months_with_actuals) == (D("33666.67"), 3)
    assert (crm.amount, crm.unallocated) == (None, None)
    erp = figures(report, "CAPEX-2025", "ERP")
    assert (erp.allocated, erp.committed, erp.open_commitments, erp.actual) == (
        D(350000),
        D(100000),
        D(70000),
        D(30000),
    )
    assert (erp.forecast_at_completion, erp.remaining, erp.burn_rate) == (
        D(100000),
        D(250000),
        D(30000),
    )


def test_project_figures_across_pools_never_add_currencies() -> None:
    report = budget_report(pools(BUDGET), Grouping.PROJECT)
    assert list(report) == [("CRM", "EUR"), ("CRM", "USD"), ("ERP", "EUR")]
    crm = report[("CRM", "EUR")]
    # CAPEX 550,000 + OPEX-Q2 50,000; actual 101,000 + 10,000 over 03, 04, 05, 07.
    assert (crm.allocated, crm.actual, crm.open_commitments) == (D(600000), D(111000), D(125000))
    assert (crm.forecast_at_completion, crm.remaining) == (D(236000), D(364000))
    assert (crm.burn_rate, crm.months_with_actuals) == (D("27750.00"), 4)
    usd = report[("CRM", "USD")]
    assert (usd.allocated, usd.actual, usd.remaining, usd.burn_rate) == (
        D(40000),
        D(5000),
        D(35000),
        D(5000),
    )


def test_category_figures() -> None:
    report = budget_report(pools(BUDGET), Grouping.CATEGORY)
    assert list(report) == [("capex", "EUR"), ("opex", "EUR"), ("opex", "USD")]
    assert report[("capex", "EUR")] == budget_report([CAPEX])[("CAPEX-2025",)]
    opex = report[("opex", "EUR")]
    assert (opex.amount, opex.allocated, opex.unallocated, opex.actual, opex.remaining) == (
        D(200000),
        D(50000),
        D(150000),
        D(10000),
        D(40000),
    )


def test_fiscal_period_figures() -> None:
    report = budget_report(pools(BUDGET), Grouping.FISCAL_PERIOD)
    assert list(report) == [("FY2025", "EUR"), ("FY2025", "USD"), ("FY2025-Q2", "EUR")]
    assert report[("FY2025", "EUR")].amount == D(1000000)
    assert report[("FY2025-Q2", "EUR")].actual_by_period == {"2025-05": D(10000)}


def test_a_pool_without_figures_still_reports_its_amount() -> None:
    empty = run(
        lg.DefineBudgetPool(
            pool_id="NEW",
            name="new",
            fiscal_year=2026,
            category="opex",
            amount=D(5000),
            currency="EUR",
            owner="x",
        )
    )
    [row] = budget_report(pools(empty)).values()
    assert (row.amount, row.allocated, row.unallocated, row.remaining) == (
        D(5000),
        D(0),
        D(5000),
        D(0),
    )
    assert (row.burn_rate, row.months_with_actuals) == (None, 0)


def test_the_figures_tie_out() -> None:
    for pool in pools(BUDGET):
        assert pool_tie_out_problems(pool) == []
        by_pool = budget_report([pool])[(pool.pool_id,)]
        rows = budget_report([pool], Grouping.POOL_PROJECT).values()
        assert sum((r.allocated for r in rows), D(0)) == by_pool.allocated == pool.allocated
        assert sum((r.actual for r in rows), D(0)) == by_pool.actual == pool.actual
        assert sum(by_pool.actual_by_period.values(), D(0)) == by_pool.actual
        assert by_pool.committed == sum(by_pool.committed_by_period.values(), D(0))


def test_a_tie_out_problem_is_reported() -> None:
    broken = PoolState(**{**CAPEX.__dict__, "allocated": D(1)})
    assert pool_tie_out_problems(broken) == ["allocated: 1 != sum of its detail 900000"]


def test_the_example_crosses_no_threshold() -> None:
    assert pool_threshold_events(CAPEX) == []


# --- the capacity example -----------------------------------------------------------------
#
# developer (FTE): 2025-04 capacity 10, time off 2 (net 8); 2025-05 capacity 10 (net 10)
#   demand 2025-04: CRM 5, ERP 4, IAM 2 = 11; 2025-05: CRM 6, ERP 3 = 9
#   timesheets 2025-04 CRM: 152.5 + 140 hours
# tester (hours): 2025-04 capacity 320, time off 40 (net 280); demand CRM 160, ERP 160


def demand(role: str, project: str, period: str, amount: str) -> lg.AssignDemand:
    return lg.AssignDemand(role=role, project_id=project, period=period, amount=D(amount))


PEOPLE = run(
    lg.SetCapacity(role="developer", period="2025-04", amount=D(10), unit="fte", time_off=D(2)),
    lg.SetCapacity(role="developer", period="2025-05", amount=D(10), unit="fte"),
    lg.SetCapacity(role="tester", period="2025-04", amount=D(320), unit="hours", time_off=D(40)),
    demand("developer", "CRM", "2025-04", "5"),
    demand("developer", "ERP", "2025-04", "4"),
    demand("developer", "IAM", "2025-04", "2"),
    demand("developer", "CRM", "2025-05", "6"),
    demand("developer", "ERP", "2025-05", "3"),
    demand("tester", "CRM", "2025-04", "160"),
    demand("tester", "ERP", "2025-04", "160"),
    lg.RecordActualHours(
        role="developer", project_id="CRM", period="2025-04", hours=D("152.5"), external_ref="T1"
    ),
    lg.RecordActualHours(
        role="developer", project_id="CRM", period="2025-04", hours=D(140), external_ref="T2"
    ),
)


def cells(states: Iterable[CapacityState], tolerance: str = "0") -> dict[tuple[str, str], Any]:
    return {(c.role, c.period): c for c in capacity_report(states, D(tolerance))}


def test_capacity_against_demand_by_role_and_month() -> None:
    report = cells(roles(PEOPLE))
    assert list(report) == [
        ("developer", "2025-04"),
        ("developer", "2025-05"),
        ("tester", "2025-04"),
    ]
    april = report[("developer", "2025-04")]
    assert (april.capacity, april.time_off, april.net_capacity, april.demand) == (
        D(10),
        D(2),
        D(8),
        D(11),
    )
    # available 8 - 11 = -3; utilisation 11 / 8 = 137.5 %
    assert (april.available, april.utilisation_percent, april.over_allocated) == (
        D(-3),
        D("137.50"),
        True,
    )
    assert april.demand_by_project == {"CRM": D(5), "ERP": D(4), "IAM": D(2)}
    assert april.actual_hours == D("292.5")
    may = report[("developer", "2025-05")]
    assert (may.available, may.utilisation_percent, may.over_allocated) == (D(1), D("90.00"), False)
    tester = report[("tester", "2025-04")]
    # 320 / 280 = 114.2857... %
    assert (tester.unit, tester.utilisation_percent, tester.over_allocated) == (
        lg.CapacityUnit.HOURS,
        D("114.29"),
        True,
    )


def test_over_allocated_cells_with_a_tolerance() -> None:
    # 20 %: developer 2025-04 11 > 8 * 1.2 = 9.6 is over; tester 320 <= 280 * 1.2 = 336 is not.
    over = over_allocated_cells(roles(PEOPLE), D(20))
    assert [(c.role, c.period) for c in over] == [("developer", "2025-04")]
    assert len(over_allocated_cells(roles(PEOPLE))) == 2


def test_a_month_with_no_net_capacity_has_no_utilisation() -> None:
    none = run(
        lg.SetCapacity(role="dba", period="2025-04", amount=D(1), unit="fte", time_off=D(1)),
        demand("dba", "CRM", "2025-04", "1"),
    )
    [cell] = capacity_report(roles(none))
    assert (cell.net_capacity, cell.utilisation_percent, cell.over_allocated) == (
        D(0),
        None,
        True,
    )


def test_projects_that_cannot_be_staffed_in_priority_order() -> None:
    # ERP first: takes developer 04: 4 (8 -> 4), 05: 3 (10 -> 7), tester 160 (280 -> 120).
    # CRM then needs developer 04: 5 > 4 and tester 160 > 120: cannot be staffed.
    # IAM needs developer 04: 2 <= 4: staffed (4 -> 2).
    plan = staffing_plan(roles(PEOPLE), ["ERP", "CRM", "IAM"])
    assert plan.staffed == ("ERP", "IAM")
    assert plan.unstaffed == (
        Unstaffed(
            "CRM",
            (
                Shortfall("developer", "2025-04", D(5), D(4)),
                Shortfall("tester", "2025-04", D(160), D(120)),
            ),
        ),
    )
    assert plan.available == {
        ("developer", "2025-04"): D(2),
        ("developer", "2025-05"): D(7),
        ("tester", "2025-04"): D(120),
    }
    # CRM first: it fits (5 <= 8, 6 <= 10, 160 <= 280); then ERP needs 4 > 3 developers and
    # 160 > 120 tester hours; IAM's 2 developers still fit in the 3 left.
    plan = staffing_plan(roles(PEOPLE), ["CRM", "ERP", "IAM"])
    assert (plan.staffed, [u.project_id for u in plan.unstaffed]) == (("CRM", "IAM"), ["ERP"])
    assert plan.unranked == ()


def test_projects_missing_from_the_priority_order_are_unranked() -> None:
    plan = staffing_plan(roles(PEOPLE), ["CRM", "CRM"])
    assert (plan.staffed, plan.unstaffed, plan.unranked) == (("CRM",), (), ("ERP", "IAM"))


def test_the_capacity_figures_tie_out() -> None:
    for state in roles(PEOPLE):
        assert capacity_tie_out_problems(state) == []
    report = capacity_report(roles(PEOPLE))
    for cell in report:
        assert sum(cell.demand_by_project.values(), D(0)) == cell.demand
        assert cell.available == cell.capacity - cell.time_off - cell.demand


# --- helpers ---------------------------------------------------------------------------------


def test_months_and_labels() -> None:
    assert months_between("2025-11", "2026-02") == ("2025-11", "2025-12", "2026-01", "2026-02")
    assert months_between("2025-05", "2025-05") == ("2025-05",)
    assert (fiscal_label(2025, None), fiscal_label(2025, 3)) == ("FY2025", "FY2025-Q3")


def test_percent_rounds_half_up_and_is_undefined_on_zero() -> None:
    assert percent(D(1), D(3)) == D("33.33")
    assert percent(D(2), D(3)) == D("66.67")
    assert percent(D("0.125"), D(1)) == D("12.50")
    assert percent(D(1), D(0)) is None
