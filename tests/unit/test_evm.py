"""Earned value against REFERENCE.md's worked example, the undefined cases, RAG per project
and the worst-wins roll-up to programmes and the portfolio."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.risk import BaselineState, Progress
from domain.risk.baselines import PlannedPoint
from domain.risk.evm import (
    Health,
    HealthThresholds,
    Rag,
    assess_project,
    eac_typical,
    earned_value,
    portfolio_health,
    project_health,
    roll_up,
    schedule_slip_days,
)

D = Decimal


def test_the_reference_worked_example() -> None:
    """BAC 100,000; PV 50,000; EV 40,000; AC 45,000 -> CPI 0.889, SPI 0.80,
    EAC typical 112,500, VAC -12,500."""
    ev = earned_value(D(100000), D(50000), D(40000), D(45000))
    assert ev.cpi is not None
    assert round(ev.cpi, 3) == D("0.889")
    assert ev.spi == D("0.8")
    assert ev.eac_typical == D("112500")
    assert ev.vac == D("-12500")
    assert ev.cv == D("-5000")
    assert ev.sv == D("-10000")
    assert ev.eac_atypical == D("105000")  # 45,000 + 60,000
    assert ev.eac_composite == D("129375")  # 45,000 + 60,000 / (0.8889 x 0.8)
    assert ev.etc == D("67500")  # 112,500 - 45,000
    assert ev.tcpi is not None
    assert round(ev.tcpi, 4) == D("1.0909")  # 60,000 / 55,000


def test_on_plan_is_exactly_one() -> None:
    ev = earned_value(D(1000), D(500), D(500), D(500))
    assert (ev.cpi, ev.spi, ev.tcpi, ev.eac_typical, ev.vac) == (D(1), D(1), D(1), D(1000), D(0))


def test_nothing_spent_yet_leaves_the_cost_indices_undefined_not_one() -> None:
    ev = earned_value(D(100000), D(10000), D(0), D(0))
    assert ev.cpi is None
    assert ev.eac_typical is None
    assert ev.eac_composite is None
    assert ev.etc is None
    assert ev.vac is None
    assert ev.spi == 0
    assert ev.eac_atypical == D(100000)
    assert ev.tcpi == 1  # 100,000 / 100,000: defined


def test_before_the_plan_starts_spi_is_undefined() -> None:
    ev = earned_value(D(100000), D(0), D(5000), D(4000))
    assert ev.spi is None
    assert ev.eac_composite is None
    assert ev.cpi == D("1.25")
    assert ev.eac_typical == D(80000)


def test_spending_without_progress_gives_cpi_zero_and_no_typical_eac() -> None:
    ev = earned_value(D(100000), D(20000), D(0), D(15000))
    assert ev.cpi == 0
    assert ev.eac_typical is None
    assert ev.eac_composite is None


@pytest.mark.parametrize("ac", [D(100000), D(130000)])
def test_tcpi_is_undefined_once_the_budget_is_spent(ac: Decimal) -> None:
    assert earned_value(D(100000), D(90000), D(80000), ac).tcpi is None


@pytest.mark.parametrize(
    ("bac", "pv", "ev", "ac"), [(0, 0, 0, 0), (100, 0, 0, 0), (100, 50, 0, 0), (100, 0, 0, 100)]
)
def test_indices_without_a_denominator_are_none_never_one(
    bac: int, pv: int, ev: int, ac: int
) -> None:
    result = earned_value(bac, pv, ev, ac)
    assert (result.cpi is None) == (ac == 0)
    assert (result.spi is None) == (pv == 0)
    assert (result.tcpi is None) == (bac - ac <= 0)


def test_figures_are_decimal_strings_or_none() -> None:
    figures = earned_value(D(100), D(0), D(0), D(0)).figures()
    assert figures["cpi"] is None
    assert figures["bac"] == "100"
    assert figures["eac_atypical"] == "100.00"


@pytest.mark.parametrize("bad", [D(-1), D("NaN"), D("Infinity")])
def test_negative_or_non_finite_inputs_are_a_bug(bad: Decimal) -> None:
    with pytest.raises(ValueError):
        earned_value(D(100), D(10), D(10), bad)


def test_schedule_slip_in_days() -> None:
    assert schedule_slip_days(date(2027, 12, 31), date(2028, 1, 30)) == 30
    assert schedule_slip_days(date(2027, 12, 31), date(2027, 12, 1)) == -30
    assert schedule_slip_days(date(2027, 12, 31), None) is None
    assert schedule_slip_days(None, date(2027, 12, 31)) is None
    reasons = [assess_project("P", None, slip_days=d).drivers[0].reason for d in (-3, 0, 9, 45)]
    assert reasons == ["3 days early", "on time", "9 days late", "45 days late > 30"]


# --- RAG ------------------------------------------------------------------------------------------


def _with_cpi(cpi: str) -> Health:
    """A project whose AC gives exactly this CPI, on schedule."""
    ev = D(1000)
    return assess_project("P", earned_value(D(2000), ev, ev, ev / D(cpi)))


@pytest.mark.parametrize(
    ("cpi", "status"),
    [
        ("1.2", "green"),
        ("0.95", "green"),
        ("0.9499", "amber"),
        ("0.90", "amber"),
        ("0.8999", "red"),
    ],
)
def test_cpi_bands(cpi: str, status: str) -> None:
    health = _with_cpi(cpi)
    assert health.status == status
    assert [d.name for d in health.drivers] == (["cpi", "spi"] if status == "green" else ["cpi"])


@pytest.mark.parametrize(
    ("days", "status"), [(-5, "green"), (0, "green"), (1, "amber"), (30, "amber"), (31, "red")]
)
def test_schedule_slip_bands(days: int, status: str) -> None:
    assert assess_project("P", None, slip_days=days).status == status


@pytest.mark.parametrize(
    ("score", "status"), [(14, "green"), (15, "amber"), (19, "amber"), (20, "red"), (25, "red")]
)
def test_risk_bands(score: int, status: str) -> None:
    health = assess_project("P", None, top_risk_score=score)
    assert health.status == status
    assert [d.name for d in health.drivers] == ["risk_score"]


def test_the_worked_example_is_red_on_cost_and_schedule() -> None:
    health = assess_project(
        "CRM-1",
        earned_value(D(100000), D(50000), D(40000), D(45000)),
        slip_days=10,
        top_risk_score=16,
    )
    assert health.status == Rag.RED
    assert [d.name for d in health.drivers] == ["cpi", "spi"]
    assert [d.reason for d in health.drivers] == ["CPI 0.889 < 0.90", "SPI 0.800 < 0.90"]
    statuses = {i.name: i.status for i in health.indicators}
    assert statuses == {
        "cpi": "red",
        "spi": "red",
        "schedule_slip_days": "amber",
        "risk_score": "amber",
    }


def test_nothing_known_is_not_available_and_unknown_indicators_never_set_a_status() -> None:
    assert assess_project("P", None).status == Rag.NOT_AVAILABLE
    assert assess_project("P", None).drivers == ()
    # AC 0: CPI not available; SPI green decides.
    health = assess_project("P", earned_value(D(100), D(10), D(10), D(0)))
    assert health.status == Rag.GREEN
    assert [d.name for d in health.drivers] == ["spi"]


def test_thresholds_are_configurable_and_checked() -> None:
    strict = HealthThresholds(cpi_green=D("1.0"), cpi_amber=D("0.98"), risk_amber=10)
    assert _with_cpi("0.97").status == Rag.GREEN
    assert (
        assess_project(
            "P", earned_value(D(2000), D(1000), D(1000), D(1000) / D("0.97")), thresholds=strict
        ).status
        == Rag.RED
    )
    assert assess_project("P", None, top_risk_score=10, thresholds=strict).status == Rag.AMBER
    with pytest.raises(ValueError):
        HealthThresholds(cpi_green=D("0.8"), cpi_amber=D("0.9"))
    with pytest.raises(ValueError):
        HealthThresholds(risk_amber=21, risk_red=20)


def test_project_health_from_baseline_progress_and_actuals() -> None:
    baseline = BaselineState(
        project_id="CRM-1",
        revision=1,
        budget_at_completion=D(100000),
        planned_value_by_period=(
            PlannedPoint("2027-02", D(20000)),
            PlannedPoint("2027-04", D(50000)),
            PlannedPoint("2027-12", D(100000)),
        ),
        planned_end=date(2027, 12, 31),
        version=3,
        progress=(
            Progress(period="2027-02", percent_complete=D(20), forecast_end=date(2027, 12, 31)),
            Progress(period="2027-05", percent_complete=D(40), forecast_end=date(2028, 2, 29)),
        ),
        forecast_end=date(2028, 2, 29),
    )
    health = project_health(baseline, D(45000), top_risk_score=8)
    ev = health.earned_value
    assert ev is not None
    assert (ev.pv, ev.ev, ev.ac) == (D(50000), D(40000), D(45000))
    assert ev.eac_typical == D(112500)
    assert health.schedule_slip_days == 60
    assert health.status == Rag.RED
    # As of February: on plan, forecast on time.
    february = project_health(baseline, D(20000), period="2027-02")
    assert february.status == Rag.GREEN
    assert february.schedule_slip_days == 0


# --- roll-up ------------------------------------------------------------------------------------


def _project(pid: str, status: Rag) -> Health:
    score = {Rag.GREEN: 5, Rag.AMBER: 15, Rag.RED: 22, Rag.NOT_AVAILABLE: None}[status]
    health = assess_project(pid, None, top_risk_score=score)
    assert health.status == status
    return health


def test_a_programme_takes_its_worst_project_and_names_it() -> None:
    programme = roll_up(
        "PRG-CX",
        [_project("A", Rag.GREEN), _project("B", Rag.RED), _project("C", Rag.AMBER)],
    )
    assert (programme.status, programme.set_by) == (Rag.RED, ("B",))
    assert [d.reason for d in programme.drivers] == ["risk score 22 ≥ 20"]


def test_ties_name_every_child_that_set_it() -> None:
    programme = roll_up("PRG", [_project("A", Rag.AMBER), _project("B", Rag.AMBER)])
    assert (programme.status, programme.set_by) == (Rag.AMBER, ("A", "B"))


def test_not_available_ranks_below_green() -> None:
    programme = roll_up("PRG", [_project("A", Rag.NOT_AVAILABLE), _project("B", Rag.GREEN)])
    assert (programme.status, programme.set_by) == (Rag.GREEN, ("B",))
    assert roll_up("EMPTY", []).status == Rag.NOT_AVAILABLE
    unknown = roll_up("PRG", [_project("A", Rag.NOT_AVAILABLE)])
    assert (unknown.status, unknown.set_by) == (Rag.NOT_AVAILABLE, ())


def test_the_portfolio_takes_the_worst_programme_or_loose_project() -> None:
    projects = [
        _project("A", Rag.GREEN),
        _project("B", Rag.AMBER),
        _project("C", Rag.RED),
        _project("D", Rag.AMBER),
    ]
    portfolio = portfolio_health(projects, {"PRG-1": ["A", "B"], "PRG-2": ["C", "unknown"]})
    assert (portfolio.status, portfolio.set_by) == (Rag.RED, ("PRG-2",))
    assert [c.subject_id for c in portfolio.children] == ["PRG-1", "PRG-2", "D"]
    assert portfolio.explain() == (
        "portfolio red: programme PRG-2 red: project C red: risk score 22 ≥ 20"
    )
    calmer = portfolio_health(projects[:2] + projects[3:], {"PRG-1": ["A", "B"]})
    assert (calmer.status, calmer.set_by) == (Rag.AMBER, ("PRG-1", "D"))


@settings(max_examples=300, deadline=None)
@given(
    st.decimals(-10, 10**9, places=2, allow_nan=False),
    st.decimals(-10, 10**9, places=2, allow_nan=False),
    st.decimals(-10, 10**9, places=2, allow_nan=False),
)
def test_eac_typical_alone_is_earned_values(bac: Decimal, ev: Decimal, ac: Decimal) -> None:
    """The report's EAC series takes EAC alone: the same figure, the same refusals."""
    try:
        expected: Decimal | str | None = earned_value(bac, 0, ev, ac).eac_typical
    except ValueError as error:
        expected = str(error)
    try:
        found: Decimal | str | None = eac_typical(bac, ev, ac)
    except ValueError as error:
        found = str(error)
    assert found == expected
