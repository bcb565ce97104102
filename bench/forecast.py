"""The portfolio forecast (domain/forecast.py): 10,000 iterations over 3,000 projects with
their risks, pools and objectives, beside the raw floor of the same run: numpy drawing the
uniforms of the projects' cost triangles alone (two per project and iteration) and summing
them. Pure CPU, no nats-server involved."""

from __future__ import annotations

import time
from datetime import date, timedelta
from decimal import Decimal

import numpy as np

from bench.report import Row
from domain.forecast import Budget, ProjectOutlook, Triangle, Uncertainty, project_outlook, simulate
from domain.risk.evm import earned_value

TARGET_S = 2.0
PROJECTS = 3_000
RISKS = 3_000
ITERATIONS = 10_000


def portfolio(
    projects: int, risks: int, seed: int = 7
) -> tuple[list[ProjectOutlook], list[Uncertainty], list[Budget]]:
    """A synthetic portfolio: 60% of the projects with progress (EAC spreads), the rest on
    the default spread; 30 programmes; risks on random projects (5% portfolio-wide), half
    with a triangle impact, a third with a delay, 15% opportunities; 10 pools and 6
    objectives as budgets."""
    rng = np.random.default_rng(seed)
    start = date(2027, 1, 1)
    outlooks = []
    for i in range(projects):
        bac = Decimal(int(rng.integers(50_000, 5_000_000)))
        earned = None
        if i % 5 < 3:
            done = Decimal(int(rng.integers(5, 90))) / 100
            ev = bac * done
            earned = earned_value(
                bac,
                ev * Decimal(str(round(rng.uniform(0.8, 1.2), 2))),
                ev,
                ev * Decimal(str(round(rng.uniform(0.85, 1.3), 2))),
            )
        outlooks.append(
            project_outlook(
                f"P-{i}",
                bac,
                earned,
                planned_start=start,
                planned_end=start + timedelta(days=int(rng.integers(90, 900))),
                benefit=bac * Decimal("1.4"),
                programme=f"PRG-{i % 30}",
            )
        )
    uncertainties = []
    for k in range(risks):
        size = float(rng.integers(5_000, 400_000))
        impact = Triangle(size * 0.5, size, size * 2.5) if k % 2 else Triangle.point(size)
        owner = None if k % 20 == 0 else f"P-{int(rng.integers(0, projects))}"
        uncertainties.append(
            Uncertainty(
                f"R-{k}",
                probability=(0.1, 0.3, 0.5, 0.7, 0.9)[k % 5],
                impact=impact,
                project_id=owner,
                opportunity=k % 7 == 0,
                delay_days=float(rng.integers(5, 60)) if k % 3 == 0 else 0.0,
            )
        )
    budgets = [
        Budget(
            f"POOL-{b}",
            amount=sum(o.cost.mode for o in outlooks[b::10]) * 1.1,
            project_ids=frozenset(o.project_id for o in outlooks[b::10]),
        )
        for b in range(10)
    ] + [
        Budget(
            f"objective:OBJ-{b}",
            amount=sum(o.cost.mode for o in outlooks[b::6]) * 1.05,
            project_ids=frozenset(o.project_id for o in outlooks[b::6]),
        )
        for b in range(6)
    ]
    return outlooks, uncertainties, budgets


def forecast_benchmarks(seed: int, progress: object, quick: bool = False) -> list[Row]:
    projects, risks, budgets = portfolio(PROJECTS, RISKS, seed)
    iterations = ITERATIONS
    simulate(projects[:50], risks[:50], iterations=100, seed=seed)  # imports, caches warm

    timings = []
    for run in range(1 if quick else 3):
        started = time.perf_counter()
        found = simulate(projects, risks, budgets, iterations=iterations, seed=seed + run)
        timings.append(time.perf_counter() - started)
    raw = []
    for _ in range(1 if quick else 3):
        rng = np.random.default_rng(seed)
        started = time.perf_counter()
        for lo in range(0, PROJECTS, 128):
            rows = min(128, PROJECTS - lo)
            first = rng.random((rows, iterations), dtype=np.float32)
            first += rng.random((rows, iterations), dtype=np.float32)
            first.sum(axis=0, dtype=np.float64)
        raw.append(time.perf_counter() - started)
    seconds, floor = min(timings), min(raw)
    row = Row(
        "forecast",
        f"forecast {iterations:,} iterations x {PROJECTS:,} projects, {RISKS:,} risks, "
        f"{len(budgets)} budgets (best of {len(timings)})",
        "ms",
        seconds * 1000,
        "numpy: the cost triangles' uniforms alone, drawn and summed",
        floor * 1000,
        target=f"≤ {TARGET_S:g} s",
        met=seconds <= TARGET_S,
        higher_is_better=False,
        note=f"P50 {found.total_cost.p50:,.0f}, P80 {found.total_cost.p80:,.0f}; "
        f"runs {', '.join(f'{t:.2f}' for t in timings)} s",
        details={"runs_s": timings, "raw_runs_s": raw, "seed": seed},
    )
    if callable(progress):
        progress(row)
    return [row]
