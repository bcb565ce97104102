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

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    #: What share of each project's cost falls on this budget (absent: all of it). A pool
    #: that funds a part of a project carries that part (allocation / planned cost).
    weights: Mapping[str, float] = field(default_factory=dict)


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
    #: The S-curve: (probability, total cost not exceeded with it), every 2.5%.
    curve: tuple[tuple[float, float], ...] = ()


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
    branch, so it runs in place on large blocks. A zero-width triangle takes its value
    and no draws."""
    low, width, place = _triangles(triangles)
    wide = np.flatnonzero(width[:, 0] > 0)
    if len(wide) == 0:
        return np.repeat(low, iterations, axis=1)
    if len(wide) < low.shape[0]:
        out = np.repeat(low, iterations, axis=1)
        out[wide] += _unit(rng, place[wide], iterations) * width[wide]
        return out
    first = _unit(rng, place, iterations)
    first *= width
    first += low
    return first


def _unit(rng: np.random.Generator, place: FloatArray, iterations: int) -> FloatArray:
    """Triangles on [0, 1] with their modes at `place` (a column)."""
    first = rng.random((place.shape[0], iterations), dtype=DTYPE)
    second = rng.random((place.shape[0], iterations), dtype=DTYPE)
    smaller = np.minimum(first, second)
    np.maximum(first, second, out=first)
    smaller *= 1 - place
    first *= place
    first += smaller
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


#: Projects drawn per block: the draws of one block stay in the processor's caches, where
#: a whole portfolio's (3,000 x 10,000 x 4 bytes = 120 MB per quantity) would not.
BLOCK = 128
#: Threads drawing blocks at once (numpy releases the GIL while it draws and sums).
WORKERS = min(4, os.cpu_count() or 1)
#: Where the S-curve of the total cost is read: every 2.5%.
CURVE = tuple(i / 40 for i in range(41))


def simulate(
    projects: Sequence[ProjectOutlook],
    risks: Sequence[Uncertainty] = (),
    budgets: Sequence[Budget] = (),
    *,
    iterations: int = 10_000,
    seed: int = 0,
) -> Forecast:
    """One pass over the projects in blocks of `BLOCK`, on up to `WORKERS` threads: each
    block's cost, slip and benefit are drawn, its projects' risks added, its rows summed
    into the totals, the programmes and the budgets, and its quantiles taken; then the
    block is dropped."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    index = {p.project_id: i for i, p in enumerate(projects)}
    owned: dict[int, list[Uncertainty]] = {}
    unscoped: list[Uncertainty] = []
    for found in risks:
        owner = index.get(found.project_id or "")
        if owner is None:
            unscoped.append(found)
        else:
            owned.setdefault(owner, []).append(found)
    groups = _Groups(projects, budgets, index)
    starts = range(0, len(projects), BLOCK)
    # One stream per block (and one for the portfolio-wide risks): the same draws whichever
    # thread runs a block, so the answer depends on the seed alone.
    streams = np.random.SeedSequence(seed).spawn(len(starts) + 1)

    def one(k: int) -> _Part:
        return _block(
            np.random.default_rng(streams[k]),
            projects,
            starts[k],
            owned,
            groups,
            iterations,
        )

    total = np.zeros(iterations)
    benefit = np.zeros(iterations)
    per_project: dict[str, ProjectForecast] = {}
    workers = min(WORKERS, len(starts))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="forecast") as pool:
            parts: Iterable[_Part] = list(pool.map(one, range(len(starts))))
    else:
        parts = map(one, range(len(starts)))
    for part in parts:  # in block order: the sums are the same whatever ran first
        total += part.total
        benefit += part.benefit
        groups.merge(part.groups)
        per_project.update(part.forecasts)
    if unscoped:
        rng = np.random.default_rng(streams[-1])
        effect = _draw(rng, (r.impact for r in unscoped), iterations)
        effect *= _fired(rng, unscoped, iterations)
        effect *= np.array([[-1.0 if r.opportunity else 1.0] for r in unscoped], dtype=DTYPE)
        total += effect.sum(axis=0, dtype=np.float64)
    planned = sum(p.cost.mode for p in projects)
    total_q = Quantiles.of(total)
    return Forecast(
        iterations=iterations,
        seed=seed,
        total_cost=total_q,
        total_benefit=Quantiles.of(benefit),
        projects=per_project,
        programmes={name: Quantiles.of(sums) for name, sums in groups.programmes().items()},
        budgets={
            b.name: _budget(b, sums) for b, sums in zip(budgets, groups.budgets(), strict=True)
        },
        planned_cost=planned,
        reserve_p80=max(total_q.p80 - planned, 0.0),
        emv_reserve=sum(r.probability * r.impact.mean for r in risks if not r.opportunity),
        curve=_curve(total),
    )


@dataclass(frozen=True)
class _Part:
    """What one block adds: per iteration, its cost and benefit and its groups' sums; its
    projects' forecasts."""

    total: FloatArray
    benefit: FloatArray
    groups: FloatArray | None
    forecasts: dict[str, ProjectForecast]


def _block(
    rng: np.random.Generator,
    projects: Sequence[ProjectOutlook],
    start: int,
    owned: Mapping[int, Sequence[Uncertainty]],
    groups: _Groups,
    iterations: int,
) -> _Part:
    """One block of projects: cost, benefit, the risks on them, slip where a risk can
    delay; summed, grouped and read for quantiles, then dropped."""
    block = projects[start : start + BLOCK]
    cost = _draw(rng, (p.cost for p in block), iterations)
    benefit = _draw(rng, (p.benefit for p in block), iterations).sum(axis=0, dtype=np.float64)
    rows = [(i - start, r) for i in range(start, start + len(block)) for r in owned.get(i, ())]
    # Slip is drawn only where a risk can delay the finish; elsewhere it is the
    # project's own triangle, whose quantiles are exact.
    late = sorted({row for row, r in rows if r.delay_days})
    slip = _draw(rng, (block[row].slip_days for row in late), iterations) if late else None
    if rows:
        _add_risks(rng, rows, cost, slip, late, iterations)
    risky = sorted({row for row, _ in rows})
    cost_q = dict(zip(risky, _quantiles(cost[risky]), strict=True)) if risky else {}
    slip_q = dict(zip(late, _quantiles(slip), strict=True)) if slip is not None else {}
    forecasts = {
        project.project_id: _project_forecast(
            project,
            cost_q.get(row) or _exact(project.cost),
            slip_q.get(row) or _exact(project.slip_days),
        )
        for row, project in enumerate(block)
    }
    return _Part(cost.sum(axis=0, dtype=np.float64), benefit, groups.part(start, cost), forecasts)


def _fired(rng: np.random.Generator, risks: Sequence[Uncertainty], iterations: int) -> FloatArray:
    chance = np.array([[r.probability] for r in risks], dtype=DTYPE)
    fired: FloatArray = (rng.random((len(risks), iterations), dtype=DTYPE) < chance).astype(DTYPE)
    return fired


def _add_risks(
    rng: np.random.Generator,
    rows: Sequence[tuple[int, Uncertainty]],
    cost: FloatArray,
    slip: FloatArray | None,
    late: Sequence[int],
    iterations: int,
) -> None:
    """Each risk of the block fires or not and moves its project's cost, and its finish
    by its delay (`slip` holds the rows `late` names)."""
    found = [r for _, r in rows]
    owner = np.array([row for row, _ in rows])
    effect = _draw(rng, (r.impact for r in found), iterations)
    fired = _fired(rng, found, iterations)
    effect *= fired
    effect *= np.array([[-1.0 if r.opportunity else 1.0] for r in found], dtype=DTYPE)
    # In rounds: round k adds every project's k-th risk, so each round indexes distinct
    # projects (a fancy-indexed += would drop repeats).
    seen: dict[int, int] = {}
    rounds: list[list[int]] = []
    for k, row in enumerate(owner.tolist()):
        n = seen.get(row, 0)
        seen[row] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(k)
    for members in rounds:
        cost[owner[members]] += effect[members]
    if slip is None:
        return
    at = {row: k for k, row in enumerate(late)}
    delays = [(k, at[row], r.delay_days) for k, (row, r) in enumerate(rows) if r.delay_days]
    for k, target, days in delays:
        slip[target] += fired[k] * DTYPE(days)


class _Groups:
    """Running sums per iteration of the programmes' and the budgets' cost, one block at a
    time: each group's member rows of the block, weighted and summed. (Not a matrix
    product: BLAS wakes its own threads for each call, which on a busy machine costs more
    than the sums themselves.)"""

    def __init__(
        self,
        projects: Sequence[ProjectOutlook],
        budgets: Sequence[Budget],
        index: Mapping[str, int],
    ) -> None:
        self.names = sorted({p.programme for p in projects if p.programme})
        where = {name: k for k, name in enumerate(self.names)}
        members: list[list[int]] = [[] for _ in range(len(self.names) + len(budgets))]
        for i, project in enumerate(projects):
            if project.programme:
                members[where[project.programme]].append(i)
        weights: list[list[float]] = [[1.0] * len(rows) for rows in members]
        for k, found in enumerate(budgets, start=len(self.names)):
            rows = sorted(index[p] for p in found.project_ids if p in index)
            members[k] = rows
            by_row = {index[p]: w for p, w in found.weights.items() if p in index}
            weights[k] = [by_row.get(row, 1.0) for row in rows]
        #: Per group: its member rows (ascending) and their weights.
        self.rows = [np.array(rows, dtype=np.int64) for rows in members]
        self.weights = [np.array(w, dtype=DTYPE).reshape(-1, 1) for w in weights]
        self.sums: FloatArray | None = None

    def part(self, start: int, cost: FloatArray) -> FloatArray | None:
        """The block's sums per group and iteration (None: no group has a project in it)."""
        found: FloatArray | None = None
        for k, rows in enumerate(self.rows):
            low, high = np.searchsorted(rows, (start, start + cost.shape[0]))
            if low == high:
                continue
            if found is None:
                found = np.zeros((len(self.rows), cost.shape[1]))
            picked = cost[rows[low:high] - start]
            weights = self.weights[k][low:high]
            if (weights != 1.0).any():
                picked *= weights
            picked.sum(axis=0, dtype=np.float64, out=found[k])
        return found

    def merge(self, part: FloatArray | None) -> None:
        if part is None:
            return
        if self.sums is None:
            self.sums = np.zeros(part.shape)
        self.sums += part

    def _sums(self, k: int) -> FloatArray:
        if self.sums is None:
            return np.zeros(1)
        found: FloatArray = self.sums[k]
        return found

    def programmes(self) -> dict[str, FloatArray]:
        return {name: self._sums(k) for k, name in enumerate(self.names)}

    def budgets(self) -> list[FloatArray]:
        return [self._sums(k) for k in range(len(self.names), len(self.rows))]


def _exact(triangle: Triangle) -> Quantiles:
    """A triangle's own quantiles (inverse of its distribution function) and mean: what a
    project nothing else moves forecasts, without a pass over its draws."""
    low, mode, high = triangle.low, triangle.mode, triangle.high
    width = high - low
    values = []
    for q in LEVELS:
        if width == 0:
            values.append(low)
        elif q < (mode - low) / width:
            values.append(low + float(np.sqrt(q * width * (mode - low))))
        else:
            values.append(high - float(np.sqrt((1 - q) * width * (high - mode))))
    p10, p50, p80, p90 = values
    return Quantiles(p10=p10, p50=p50, p80=p80, p90=p90, mean=triangle.mean)


def _curve(total: FloatArray) -> tuple[tuple[float, float], ...]:
    """(probability, total cost) every 2.5%: the S-curve of the total cost."""
    size = total.shape[0]
    ranks = [min(round(q * (size - 1)), size - 1) for q in CURVE]
    picked = np.partition(total, sorted(set(ranks)))[ranks]
    return tuple((q, float(v)) for q, v in zip(CURVE, picked.tolist(), strict=True))


def _project_forecast(project: ProjectOutlook, cost: Quantiles, slip: Quantiles) -> ProjectForecast:
    finish: dict[str, date] = {}
    if project.planned_end is not None:
        for name in ("p50", "p80", "p90"):
            days = int(np.ceil(getattr(slip, name)))
            finish[name] = project.planned_end + timedelta(days=days)
    return ProjectForecast(cost=cost, slip_days=slip, basis=project.basis, finish=finish)


def _budget(budget: Budget, spent: FloatArray) -> BudgetOutlook:
    return BudgetOutlook(
        amount=budget.amount,
        cost=Quantiles.of(spent),
        probability_within=float((spent <= budget.amount).mean()),
    )
