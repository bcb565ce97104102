"""The probabilistic portfolio forecast: a seeded Monte Carlo over cost at completion,
finish dates and benefits.

Why a simulation: "how likely are we to stay within the 2027 budget, and what reserve
covers us at 80%?" has no closed form once projects spread differently and risks fire
independently. Every draw is vectorised (numpy) and the generator is seeded, so the same
inputs and seed give the same answer, and the seed can be recorded as a decision input.

What each iteration draws:
- per project, a cost at completion from a triangle (`Triangle`): with progress, between
  its earned-value EAC formulas (typical, atypical, composite: lowest, middle, highest);
  without progress, around its budget at completion with `DEFAULT_COST_SPREAD`;
- per project, a schedule slip in days from a triangle (see `project_outlook`);
- per project, its benefits from a triangle (`DEFAULT_BENEFIT_SPREAD`);
- per open risk, whether it fires (Bernoulli with its probability) and, if so, its
  monetary impact (a single value or a min / most likely / max triangle) and delay: a
  threat adds to its project's cost and finish, an opportunity takes from the cost.
Independent draws: correlations between projects are not modelled (a documented limit:
the spread of the total is then narrower than in a portfolio where overruns move together).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from domain.risk.evm import EarnedValue

FloatArray = npt.NDArray[np.floating[Any]]
#: Draws are single precision: half the memory traffic, and 7 digits is finer than any
#: estimate a forecast starts from (sums are taken in double precision).
DTYPE = np.float32

#: Quantiles every answer carries.
LEVELS = (0.10, 0.50, 0.80, 0.90)

#: A project without progress: cost at completion between 5% under and 30% over its
#: budget, most likely on it (overruns are likelier and larger than underruns).
DEFAULT_COST_SPREAD = (-0.05, 0.0, 0.30)
#: A project without progress: slip between none and 20% of its planned duration, most
#: likely 5%.
DEFAULT_SLIP_SPREAD = (0.0, 0.05, 0.20)
#: Benefits between 40% under and 10% over the business case, most likely 10% under.
DEFAULT_BENEFIT_SPREAD = (-0.40, -0.10, 0.10)


@dataclass(frozen=True)
class Triangle:
    """min / most likely / max; a single value is a triangle of zero width."""

    low: float
    mode: float
    high: float

    def __post_init__(self) -> None:
        values = (self.low, self.mode, self.high)
        if not all(np.isfinite(v) for v in values):
            raise ValueError(f"a triangle needs finite values, got {values}")
        if not self.low <= self.mode <= self.high:
            raise ValueError(f"a triangle needs low <= mode <= high, got {values}")

    @classmethod
    def point(cls, value: float) -> Triangle:
        return cls(value, value, value)

    @classmethod
    def around(cls, value: float, spread: tuple[float, float, float]) -> Triangle:
        low, mode, high = sorted(value * (1 + s) for s in spread)
        return cls(low, mode, high)

    @property
    def mean(self) -> float:
        return (self.low + self.mode + self.high) / 3


@dataclass(frozen=True)
class ProjectOutlook:
    project_id: str
    cost: Triangle
    slip_days: Triangle = Triangle(0.0, 0.0, 0.0)
    benefit: Triangle = Triangle(0.0, 0.0, 0.0)
    planned_end: date | None = None
    programme: str | None = None
    #: Where the cost is drawn from: `earned_value` or `default` (no progress yet).
    basis: str = "default"


@dataclass(frozen=True)
class Uncertainty:
    """An open risk: a threat adds its impact to the cost, an opportunity takes it away."""

    risk_id: str
    probability: float
    impact: Triangle
    project_id: str | None = None
    opportunity: bool = False
    delay_days: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within 0..1, got {self.probability}")
        if self.impact.low < 0:
            raise ValueError("an impact is a size: the opportunity flag gives its sign")


@dataclass(frozen=True)
class Budget:
    """A budget the portfolio's cost is held against: a pool or an objective's funding."""

    name: str
    amount: float
    project_ids: frozenset[str]


@dataclass(frozen=True)
class Quantiles:
    p10: float
    p50: float
    p80: float
    p90: float
    mean: float
    #: Standard deviation: given for totals (programmes, budgets, the portfolio), not per
    #: project, where it would cost a pass over every draw.
    std: float | None = None

    @classmethod
    def of(cls, samples: FloatArray) -> Quantiles:
        q = _quantiles(samples.reshape(1, -1))[0]
        return replace(q, std=float(samples.std(dtype=np.float64)))


@dataclass(frozen=True)
class ProjectForecast:
    cost: Quantiles
    slip_days: Quantiles
    basis: str
    finish: dict[str, date] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetOutlook:
    amount: float
    cost: Quantiles
    probability_within: float


@dataclass(frozen=True)
class Forecast:
    iterations: int
    seed: int
    total_cost: Quantiles
    total_benefit: Quantiles
    projects: dict[str, ProjectForecast]
    programmes: dict[str, Quantiles]
    budgets: dict[str, BudgetOutlook]
    #: What the plan expects (Σ most likely cost): the reserve is measured against it.
    planned_cost: float
    #: Reserve that covers the total cost in 80% of the iterations.
    reserve_p80: float
    #: Today's reserve by expected monetary value (Σ p x mean impact over open threats).
    emv_reserve: float


def project_outlook(
    project_id: str,
    bac: Decimal,
    earned: EarnedValue | None,
    *,
    planned_start: date | None = None,
    planned_end: date | None = None,
    benefit: Decimal = Decimal(0),
    programme: str | None = None,
) -> ProjectOutlook:
    """A project's spread from its figures: the EAC formulas bound its cost once it has
    progress (EV and AC above zero); the schedule slip follows the SPI over the remaining
    duration when there is one, else the default spread of the planned duration."""
    duration = max((planned_end - planned_start).days, 0) if planned_start and planned_end else 0
    formulas = (
        [float(f) for f in (earned.eac_typical, earned.eac_atypical, earned.eac_composite) if f]
        if earned is not None and earned.ev > 0 and earned.ac > 0
        else []
    )
    if formulas:
        formulas.sort()
        cost = Triangle(formulas[0], formulas[len(formulas) // 2], formulas[-1])
        basis = "earned_value"
    else:
        cost = Triangle.around(float(bac), DEFAULT_COST_SPREAD)
        basis = "default"
    slip = Triangle(*(duration * s for s in DEFAULT_SLIP_SPREAD))
    if earned is not None and earned.spi and earned.bac > 0 and duration:
        remaining = duration * float(1 - earned.ev / earned.bac)
        late = max(remaining * (1 / float(earned.spi) - 1), 0.0)
        slip = Triangle(0.0, late, max(late * 1.5, slip.high))
    return ProjectOutlook(
        project_id=project_id,
        cost=cost,
        slip_days=slip,
        benefit=Triangle.around(float(benefit), DEFAULT_BENEFIT_SPREAD),
        planned_end=planned_end,
        programme=programme,
        basis=basis,
    )


def _triangles(items: Iterable[Triangle]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Column vectors (one row per item) of low, width and mode's place within the width."""
    rows = np.array([(t.low, t.mode, t.high) for t in items], dtype=np.float64).reshape(-1, 3)
    low, mode, high = rows[:, 0:1], rows[:, 1:2], rows[:, 2:3]
    width = high - low
    place = np.divide(mode - low, width, out=np.zeros_like(width), where=width > 0)
    return low.astype(DTYPE), width.astype(DTYPE), place.astype(DTYPE)


def _draw(rng: np.random.Generator, triangles: Iterable[Triangle], iterations: int) -> FloatArray:
    """One row of draws per triangle. A triangle on [0, 1] with mode c is
    (1 - c) min(U1, U2) + c max(U1, U2) (Stein & Keblis, 2009): no square roots and no
    branch, so it runs in place on large blocks; a zero-width triangle gives its value."""
    low, width, place = _triangles(triangles)
    first = rng.random((low.shape[0], iterations), dtype=DTYPE)
    second = rng.random((low.shape[0], iterations), dtype=DTYPE)
    smaller = np.minimum(first, second)
    np.maximum(first, second, out=first)
    smaller *= 1 - place
    first *= place
    first += smaller
    first *= width
    first += low
    return first


def _quantiles(rows: FloatArray) -> list[Quantiles]:
    """Quantiles of every row at once (one partition of the block, not one sort per row),
    by nearest rank: each is a value some iteration drew."""
    size = rows.shape[1]
    ranks = [min(round(q * (size - 1)), size - 1) for q in LEVELS]
    picked = np.partition(rows, sorted(set(ranks)), axis=1)[:, ranks].astype(np.float64)
    means = rows.mean(axis=1, dtype=np.float64)
    return [
        Quantiles(p10=q[0], p50=q[1], p80=q[2], p90=q[3], mean=m)
        for q, m in zip(picked.tolist(), means.tolist(), strict=True)
    ]


def simulate(
    projects: Sequence[ProjectOutlook],
    risks: Sequence[Uncertainty] = (),
    budgets: Sequence[Budget] = (),
    *,
    iterations: int = 10_000,
    seed: int = 0,
) -> Forecast:
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    rng = np.random.default_rng(seed)
    index = {p.project_id: i for i, p in enumerate(projects)}
    cost = _draw(rng, (p.cost for p in projects), iterations)
    slip = _draw(rng, (p.slip_days for p in projects), iterations)
    benefit = _draw(rng, (p.benefit for p in projects), iterations).sum(axis=0, dtype=np.float64)
    # Risks: the ones scoped to a known project move that project; the rest the total.
    unscoped = np.zeros(iterations)
    if risks:
        chance = np.array([[r.probability] for r in risks], dtype=DTYPE)
        effect = _draw(rng, (r.impact for r in risks), iterations)
        fired = rng.random(effect.shape, dtype=DTYPE) < chance
        effect *= fired
        effect *= np.array([[-1.0 if r.opportunity else 1.0] for r in risks], dtype=DTYPE)
        owner = np.array([index.get(r.project_id or "", -1) for r in risks])
        scoped = owner >= 0
        delays = np.array([[r.delay_days] for r in risks], dtype=DTYPE)
        # Add each project's risks in rounds: round k adds every project's k-th risk, so
        # each round indexes distinct projects (a fancy-indexed += would drop repeats).
        seen: dict[int, int] = {}
        rounds: list[list[int]] = []
        for row in np.flatnonzero(scoped).tolist():
            k = seen.get(owner[row], 0)
            seen[owner[row]] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(row)
        for rows in rounds:
            cost[owner[rows]] += effect[rows]
            if delays[rows].any():
                slip[owner[rows]] += fired[rows] * delays[rows]
        unscoped = effect[~scoped].sum(axis=0, dtype=np.float64)
    total = cost.sum(axis=0, dtype=np.float64) + unscoped
    cost_q, slip_q = _quantiles(cost), _quantiles(slip)
    per_project = {
        p.project_id: _project_forecast(p, cost_q[i], slip_q[i]) for i, p in enumerate(projects)
    }
    planned = sum(p.cost.mode for p in projects)
    total_q = Quantiles.of(total)
    return Forecast(
        iterations=iterations,
        seed=seed,
        total_cost=total_q,
        total_benefit=Quantiles.of(benefit),
        projects=per_project,
        programmes=_groups(projects, cost),
        budgets={b.name: _budget(b, index, cost) for b in budgets},
        planned_cost=planned,
        reserve_p80=max(total_q.p80 - planned, 0.0),
        emv_reserve=sum(r.probability * r.impact.mean for r in risks if not r.opportunity),
    )


def _project_forecast(project: ProjectOutlook, cost: Quantiles, slip: Quantiles) -> ProjectForecast:
    finish: dict[str, date] = {}
    if project.planned_end is not None:
        for name in ("p50", "p80", "p90"):
            days = int(np.ceil(getattr(slip, name)))
            finish[name] = project.planned_end + timedelta(days=days)
    return ProjectForecast(cost=cost, slip_days=slip, basis=project.basis, finish=finish)


def _groups(projects: Sequence[ProjectOutlook], cost: FloatArray) -> dict[str, Quantiles]:
    members: dict[str, list[int]] = {}
    for i, project in enumerate(projects):
        if project.programme:
            members.setdefault(project.programme, []).append(i)
    return {
        name: Quantiles.of(cost[rows].sum(axis=0, dtype=np.float64))
        for name, rows in members.items()
    }


def _budget(budget: Budget, index: Mapping[str, int], cost: FloatArray) -> BudgetOutlook:
    rows = [index[p] for p in sorted(budget.project_ids) if p in index]
    spent = cost[rows].sum(axis=0, dtype=np.float64) if rows else np.zeros(cost.shape[1])
    return BudgetOutlook(
        amount=budget.amount,
        cost=Quantiles.of(spent),
        probability_within=float((spent <= budget.amount).mean()),
    )
