"""The Monte Carlo forecast against cases with known answers (the oracle is arithmetic,
not the simulation): a single risk, independent risks, triangles, convergence, seeds."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.forecast import (
    DEFAULT_COST_SPREAD,
    Budget,
    ProjectOutlook,
    Triangle,
    Uncertainty,
    project_outlook,
    simulate,
)
from domain.risk.evm import earned_value

N = 200_000


def test_a_single_risk_has_mean_p_times_impact_and_exact_quantiles() -> None:
    risk = Uncertainty("R1", probability=0.3, impact=Triangle.point(1_000.0))
    forecast = simulate([], [risk], iterations=N, seed=7)
    # Bernoulli(0.3) x 1,000: mean 300, P(cost = 0) = 0.7, so P10..P50 are 0 and P80, P90
    # are 1,000 exactly.
    assert forecast.total_cost.mean == pytest.approx(300, rel=0.02)
    assert (forecast.total_cost.p10, forecast.total_cost.p50) == (0.0, 0.0)
    assert (forecast.total_cost.p80, forecast.total_cost.p90) == (1_000.0, 1_000.0)
    assert forecast.emv_reserve == pytest.approx(300)


def test_independent_risks_add_their_means_and_variances() -> None:
    risks = [
        Uncertainty("A", 0.2, Triangle.point(5_000.0)),
        Uncertainty("B", 0.5, Triangle.point(2_000.0)),
        Uncertainty("C", 0.9, Triangle.point(800.0)),
    ]
    mean = sum(r.probability * r.impact.low for r in risks)
    variance = sum(r.probability * (1 - r.probability) * r.impact.low**2 for r in risks)
    forecast = simulate([], risks, iterations=N, seed=3)
    assert forecast.total_cost.mean == pytest.approx(mean, rel=0.02)
    assert forecast.total_cost.std is not None
    assert forecast.total_cost.std**2 == pytest.approx(variance, rel=0.03)


def test_a_triangle_has_mean_a_plus_m_plus_b_over_three() -> None:
    project = ProjectOutlook("P", cost=Triangle(100.0, 130.0, 250.0))
    forecast = simulate([project], iterations=N, seed=1)
    assert forecast.total_cost.mean == pytest.approx((100 + 130 + 250) / 3, rel=0.01)
    # The triangle's median has a closed form: b - sqrt((b-a)(b-c)/2) when c <= midpoint.
    median = 250 - math.sqrt((250 - 100) * (250 - 130) / 2)
    assert forecast.total_cost.p50 == pytest.approx(median, rel=0.01)
    assert 100 <= forecast.projects["P"].cost.p10 <= forecast.projects["P"].cost.p90 <= 250


def test_an_opportunity_lowers_the_cost_and_a_project_risk_moves_its_project() -> None:
    projects = [
        ProjectOutlook("P", cost=Triangle.point(1_000.0), planned_end=date(2027, 6, 30)),
        ProjectOutlook("Q", cost=Triangle.point(500.0)),
    ]
    risks = [
        Uncertainty("T", 1.0, Triangle.point(200.0), project_id="P", delay_days=10),
        Uncertainty("O", 1.0, Triangle.point(50.0), project_id="Q", opportunity=True),
    ]
    forecast = simulate(projects, risks, iterations=1_000, seed=0)
    assert forecast.projects["P"].cost.p50 == 1_200.0
    assert forecast.projects["Q"].cost.p50 == 450.0
    assert forecast.total_cost.p50 == 1_650.0
    assert forecast.projects["P"].finish["p50"] == date(2027, 7, 10)
    assert forecast.emv_reserve == 200.0


def test_budgets_answer_the_probability_of_staying_within() -> None:
    # Uniform-ish cost: triangle (0, 50, 100) is symmetric, so P(cost <= 50) = 0.5 and
    # P(cost <= 100) = 1.
    projects = [ProjectOutlook("P", cost=Triangle(0.0, 50.0, 100.0))]
    budgets = [
        Budget("half", 50.0, frozenset({"P"})),
        Budget("all", 100.0, frozenset({"P"})),
        Budget("none", 0.0, frozenset({"unknown"})),
    ]
    forecast = simulate(projects, budgets=budgets, iterations=N, seed=5)
    assert forecast.budgets["half"].probability_within == pytest.approx(0.5, abs=0.01)
    assert forecast.budgets["all"].probability_within == 1.0
    assert forecast.budgets["none"].probability_within == 1.0  # nothing of it is forecast


def test_the_reserve_at_p80_is_measured_against_the_plan() -> None:
    projects = [ProjectOutlook("P", cost=Triangle(90.0, 100.0, 200.0))]
    forecast = simulate(projects, iterations=N, seed=2)
    assert forecast.planned_cost == 100.0
    assert forecast.reserve_p80 == pytest.approx(forecast.total_cost.p80 - 100.0)
    assert forecast.reserve_p80 > 0


def test_the_same_seed_gives_the_same_forecast_and_another_seed_another() -> None:
    projects = [ProjectOutlook("P", cost=Triangle(1.0, 2.0, 9.0))]
    risks = [Uncertainty("R", 0.4, Triangle(1.0, 3.0, 7.0))]
    assert simulate(projects, risks, seed=42) == simulate(projects, risks, seed=42)
    assert simulate(projects, risks, seed=42) != simulate(projects, risks, seed=43)


def test_the_mean_converges_as_iterations_grow() -> None:
    projects = [ProjectOutlook("P", cost=Triangle(0.0, 10.0, 100.0))]
    exact = 110 / 3
    errors = [
        np.mean(
            [
                abs(simulate(projects, iterations=n, seed=s).total_cost.mean - exact)
                for s in range(8)
            ]
        )
        for n in (100, 10_000)
    ]
    assert errors[1] < errors[0] / 3  # error ~ 1/sqrt(n): 10x fewer at 100x the draws


def test_a_project_with_progress_draws_between_its_eac_formulas() -> None:
    ev = earned_value(100_000, 50_000, 40_000, 45_000)  # REFERENCE.md's example
    outlook = project_outlook(
        "P", Decimal(100_000), ev, planned_start=date(2027, 1, 1), planned_end=date(2027, 12, 31)
    )
    formulas = sorted(float(x) for x in (ev.eac_typical, ev.eac_atypical, ev.eac_composite) if x)
    assert (outlook.cost.low, outlook.cost.high) == (formulas[0], formulas[-1])
    assert outlook.basis == "earned_value"
    assert outlook.slip_days.mode > 0  # SPI 0.8: late


def test_a_project_without_progress_takes_the_documented_default() -> None:
    outlook = project_outlook("P", Decimal(1_000), None)
    low, mode, high = (1_000 * (1 + s) for s in DEFAULT_COST_SPREAD)
    assert (outlook.cost.low, outlook.cost.mode, outlook.cost.high) == (low, mode, high)
    assert outlook.basis == "default"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Triangle(2.0, 1.0, 3.0),
        lambda: Triangle(float("nan"), 1.0, 3.0),
        lambda: Uncertainty("R", 1.5, Triangle.point(1.0)),
        lambda: Uncertainty("R", 0.5, Triangle.point(-1.0)),
        lambda: simulate([], iterations=0),
    ],
)
def test_bad_inputs_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0, 1e6)).map(sorted),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 2**31),
)
def test_quantiles_are_ordered_and_within_the_triangles(
    triangles: list[list[float]], seed: int
) -> None:
    projects = [ProjectOutlook(f"P{i}", cost=Triangle(*t)) for i, t in enumerate(triangles)]
    forecast = simulate(projects, iterations=500, seed=seed)
    q = forecast.total_cost
    assert q.p10 <= q.p50 <= q.p80 <= q.p90
    low = sum(t[0] for t in triangles)
    high = sum(t[2] for t in triangles)
    assert low - 1e-6 * (1 + high) <= q.p10 and q.p90 <= high + 1e-6 * (1 + high)


def test_budgets_and_programmes_add_up_across_blocks() -> None:
    # More projects than one block: every budget and programme must still count each of
    # its projects once, wherever its block falls.
    from domain.forecast import BLOCK

    count = BLOCK * 2 + 7
    projects = [
        ProjectOutlook(f"P{i}", cost=Triangle.point(float(i + 1)), programme=f"G{i % 3}")
        for i in range(count)
    ]
    budgets = [
        Budget("odd", 1e12, frozenset(f"P{i}" for i in range(1, count, 2))),
        Budget(
            "tight", float(count * (count + 1) / 2) - 1, frozenset(p.project_id for p in projects)
        ),
    ]
    forecast = simulate(projects, budgets=budgets, iterations=50, seed=1)
    assert forecast.budgets["odd"].cost.p50 == sum(i + 1 for i in range(1, count, 2))
    assert forecast.budgets["tight"].probability_within == 0.0
    for g in range(3):
        assert forecast.programmes[f"G{g}"].mean == pytest.approx(
            sum(i + 1 for i in range(g, count, 3))
        )
    assert forecast.total_cost.p50 == count * (count + 1) / 2


def test_a_project_no_risk_moves_reports_its_triangles_exact_quantiles() -> None:
    triangle = Triangle(100.0, 130.0, 250.0)
    forecast = simulate([ProjectOutlook("P", cost=triangle)], iterations=1_000, seed=4)
    exact = forecast.projects["P"].cost
    assert exact.p50 == pytest.approx(250 - math.sqrt((250 - 100) * (250 - 130) / 2))
    assert exact.mean == pytest.approx(triangle.mean)
    # With a risk on it, its quantiles are read from the draws instead.
    risk = Uncertainty("R", 1.0, Triangle.point(10.0), project_id="P", delay_days=5)
    drawn = simulate([ProjectOutlook("P", cost=triangle)], [risk], iterations=20_000, seed=4)
    assert drawn.projects["P"].cost.p50 == pytest.approx(exact.p50 + 10, rel=0.01)
    assert drawn.projects["P"].slip_days.p50 == 5.0


def test_the_s_curve_rises_from_the_lowest_to_the_highest_total() -> None:
    projects = [ProjectOutlook("P", cost=Triangle(0.0, 10.0, 100.0))]
    forecast = simulate(projects, iterations=4_001, seed=9)
    probabilities = [q for q, _ in forecast.curve]
    costs = [c for _, c in forecast.curve]
    assert probabilities[0] == 0.0 and probabilities[-1] == 1.0
    assert costs == sorted(costs)
    assert dict(forecast.curve)[0.5] == forecast.total_cost.p50
    assert dict(forecast.curve)[0.9] == forecast.total_cost.p90


def test_a_budget_carries_the_share_of_a_project_it_funds() -> None:
    projects = [ProjectOutlook("P", cost=Triangle.point(1_000.0))]
    budgets = [Budget("pool", 250.0, frozenset({"P"}), weights={"P": 0.25})]
    forecast = simulate(projects, budgets=budgets, iterations=10, seed=0)
    assert forecast.budgets["pool"].cost.p50 == 250.0
    assert forecast.budgets["pool"].probability_within == 1.0


def test_threads_do_not_change_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import domain.forecast as fc

    projects = [
        ProjectOutlook(f"P{i}", cost=Triangle(90.0, 100.0 + i, 200.0 + i), programme=f"G{i % 4}")
        for i in range(fc.BLOCK * 3 + 5)
    ]
    risks = [
        Uncertainty(f"R{i}", 0.4, Triangle(1.0, 5.0, 9.0), project_id=f"P{i * 7}", delay_days=3)
        for i in range(50)
    ] + [Uncertainty("W", 0.5, Triangle.point(100.0))]
    budgets = [Budget("all", 1e5, frozenset(p.project_id for p in projects))]
    monkeypatch.setattr(fc, "WORKERS", 1)
    alone = simulate(projects, risks, budgets, iterations=2_000, seed=8)
    monkeypatch.setattr(fc, "WORKERS", 4)
    assert simulate(projects, risks, budgets, iterations=2_000, seed=8) == alone
