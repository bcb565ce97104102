"""Optimal portfolio selection: a 0/1 knapsack with budget and capacity rows, solved exactly.

maximise   Σ value_i x_i                      x_i ∈ {0, 1}, one per candidate
subject to Σ cost_i,bucket x_i <= budget_bucket   per budget bucket, e.g. ("2027", "capex")
           Σ demand_i,cell x_i <= capacity_cell   per capacity cell (role, period)
           x_i = 1 (mandatory), x_i = 0 (excluded), x_a <= x_b (a depends on b)

Solved with SciPy's HiGHS on sparse matrices: the LP relaxation gives an upper bound and,
rounded and filled greedily, a feasible selection; variables whose reduced cost proves they
cannot move in any better selection are fixed; the MILP solves the rest. The answer is the
better of the two, with the relative gap to the bound. Greedy alone is not optimal.
Value and cost on different scales bias the optimiser toward small projects: give it
scores, not raw money, as values, and read the reasons before trusting a miss.

Pure and deterministic: candidates are ordered by project_id before the model is built,
every map in a result is sorted, and money is checked exactly in Decimal after the solve.
Infeasibility (mandatory projects that cannot fit) is found combinatorially before solving,
which is exact because every cost and demand is >= 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from domain.prioritization.candidates import (
    CAPACITY_TOLERANCE,
    DEFAULT_TIME_LIMIT,
    TOTAL,
    Bucket,
    Cell,
    FrontierPoint,
    Model,
    SelectionCandidate,
    SelectionError,
    SelectionResult,
    SolverStatus,
    bucket_label,
    cell_label,
    check_mandatory,
    prepare,
    rounded,
)
from domain.prioritization.milp import Solution, solve, time_left

__all__ = [
    "CAPACITY_TOLERANCE",
    "DEFAULT_TIME_LIMIT",
    "TOTAL",
    "Bucket",
    "Cell",
    "FrontierPoint",
    "SelectionCandidate",
    "SelectionError",
    "SelectionResult",
    "SolverStatus",
    "SyntheticInstance",
    "bucket_label",
    "cell_label",
    "efficient_frontier",
    "select",
    "synthetic_instance",
]

# --- explaining the result -------------------------------------------------------------


def _explain(
    model: Model,
    chosen: Collection[str],
    budgets: Mapping[Bucket, Decimal],
    capacity: Mapping[Cell, float],
    cost_by_bucket: Mapping[Bucket, Decimal],
    capacity_use: Mapping[Cell, float],
) -> dict[str, str]:
    reasons: dict[str, str] = {}
    # Relative slack of every row, to name the binding ones when nothing blocks a candidate.
    slack: dict[str, float] = {
        f"budget {bucket_label(b)}": float((budgets[b] - cost_by_bucket[b]) / budgets[b])
        for b in sorted(budgets)
        if budgets[b] > 0
    } | {
        f"capacity {cell_label(c)}": (capacity[c] - capacity_use[c]) / capacity[c]
        for c in sorted(capacity)
        if capacity[c] > 0
    }
    for cand in model.candidates:
        pid = cand.project_id
        if pid in chosen:
            continue
        if cand.excluded:
            reasons[pid] = "excluded"
            continue
        missing = [
            d
            for d in sorted(cand.dependencies)
            if d not in chosen and not (d not in model.index and d in model.satisfied)
        ]
        if missing:
            reasons[pid] = "; ".join(f"dependency {d} not selected" for d in missing)
            continue
        overflow = [
            f"budget {bucket_label(b)}"
            for b in sorted(set(cand.costs) & set(budgets))
            if cost_by_bucket[b] + cand.costs[b] > budgets[b]
        ] + [
            f"capacity {cell_label(c)}"
            for c in sorted(set(cand.demand) & set(capacity))
            if capacity_use[c] + cand.demand[c]
            > capacity[c] + CAPACITY_TOLERANCE * max(1.0, capacity[c])
        ]
        if overflow:
            reasons[pid] = "; ".join(overflow)
        elif cand.value <= 0:
            reasons[pid] = "no positive value"
        else:
            # It fits as things stand, so the selection is within the solver's gap of
            # optimal; name the tightest rows it uses (or, if it uses none, of all rows).
            uses = [f"budget {bucket_label(b)}" for b in cand.costs if cand.costs[b]] + [
                f"capacity {cell_label(c)}" for c in cand.demand if cand.demand[c]
            ]
            binding = _tightest({k: v for k, v in slack.items() if k in uses} or slack)
            named = f" ({', '.join(binding)} binding)" if binding else ""
            reasons[pid] = f"better value elsewhere{named}"
    return reasons


def _tightest(slack: Mapping[str, float]) -> list[str]:
    """The rows with the least relative slack, in label order."""
    least = min(slack.values(), default=None)
    return [] if least is None else sorted(k for k, v in slack.items() if v <= least + 1e-12)


def _usage(
    model: Model,
    chosen: Iterable[str],
    budgets: Mapping[Bucket, Decimal],
    capacity: Mapping[Cell, float],
) -> tuple[dict[Bucket, Decimal], dict[Cell, float]]:
    cost: dict[Bucket, Decimal] = dict.fromkeys(budgets, Decimal(0))
    use: dict[Cell, float] = dict.fromkeys(capacity, 0.0)
    for pid in chosen:
        cand = model.candidates[model.index[pid]]
        for bucket, amount in cand.costs.items():
            cost[bucket] = cost.get(bucket, Decimal(0)) + amount
        for cell, demand in cand.demand.items():
            use[cell] = use.get(cell, 0.0) + demand
    return dict(sorted(cost.items())), dict(sorted(use.items()))


def _check_inputs(budgets: Mapping[Bucket, Decimal], capacity: Mapping[Cell, float]) -> None:
    for bucket, budget in budgets.items():
        if not budget.is_finite() or budget < 0:
            raise SelectionError(f"budget {bucket_label(bucket)} must be >= 0, got {budget}")
    for cell, amount in capacity.items():
        if not math.isfinite(amount) or amount < 0:
            raise SelectionError(f"capacity {cell_label(cell)} must be >= 0, got {amount}")


def select(
    candidates: Iterable[SelectionCandidate],
    budgets: Mapping[Bucket, Decimal],
    capacity: Mapping[Cell, float] | None = None,
    *,
    satisfied: Collection[str] = (),
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    mip_rel_gap: float = 0.0,
) -> SelectionResult:
    """The selection of maximum total value within budgets and capacity.

    `satisfied`: ids outside the candidate set that count as delivered dependencies (e.g.
    projects already in progress). `time_limit` (seconds, None = no limit): at the limit the
    best selection found is returned with status "time_limit" and its gap.
    Raises SelectionError for dependency cycles and for mandatory projects that cannot fit
    (naming the smallest conflicting set found).
    """
    started = time.perf_counter()
    cap = dict(capacity or {})
    _check_inputs(budgets, cap)
    model = prepare(candidates, satisfied)
    check_mandatory(model, budgets, cap)
    if model.candidates:
        left = time_left(time_limit, started)
        solution = solve(model, budgets, cap, time_limit=left, mip_rel_gap=mip_rel_gap)
    else:
        solution = Solution("optimal", [], 0.0, "no candidates")
    indexes = solution.chosen
    chosen = tuple(model.candidates[j].project_id for j in indexes)
    cost, use = _usage(model, chosen, budgets, cap)
    return SelectionResult(
        status=solution.status,
        selected=chosen,
        total_value=rounded(math.fsum(model.candidates[j].value for j in indexes)),
        cost_by_bucket=cost,
        capacity_use={c: rounded(u) for c, u in use.items()},
        not_selected=_explain(model, set(chosen), budgets, cap, cost, use),
        mip_gap=rounded(solution.gap),
        solver_message=solution.message,
    )


def efficient_frontier(
    candidates: Iterable[SelectionCandidate],
    budgets: Sequence[Decimal],
    capacity: Mapping[Cell, float] | None = None,
    *,
    satisfied: Collection[str] = (),
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    mip_rel_gap: float = 0.0,
) -> tuple[FrontierPoint, ...]:
    """The optimal value and selection at each total budget level, in the order given.

    Each candidate's costs are summed into one overall bucket; mandatory, excluded and
    dependency rules (and capacity, when given) apply as in `select`. A level the mandatory
    projects do not fit in is reported as "infeasible" with the reason, not raised.
    """
    cap = dict(capacity or {})
    for level in budgets:
        _check_inputs({TOTAL: level}, cap)
    totals = [
        SelectionCandidate(
            project_id=c.project_id,
            value=c.value,
            costs={TOTAL: c.total_cost()},
            demand=c.demand,
            mandatory=c.mandatory,
            excluded=c.excluded,
            dependencies=c.dependencies,
        )
        for c in candidates
    ]
    model = prepare(totals, satisfied)
    points: list[FrontierPoint] = []
    for level in budgets:
        started = time.perf_counter()
        limit = {TOTAL: level}
        try:
            check_mandatory(model, limit, cap)
        except SelectionError as error:
            points.append(FrontierPoint(level, "infeasible", None, None, (), str(error)))
            continue
        if not model.candidates:
            points.append(FrontierPoint(level, "optimal", 0.0, Decimal(0), ()))
            continue
        left = time_left(time_limit, started)
        solution = solve(model, limit, cap, time_limit=left, mip_rel_gap=mip_rel_gap)
        status, indexes = solution.status, solution.chosen
        chosen = [model.candidates[j] for j in indexes]
        points.append(
            FrontierPoint(
                budget=level,
                status=status,
                value=rounded(math.fsum(c.value for c in chosen)),
                cost=sum((c.costs[TOTAL] for c in chosen), Decimal(0)),
                selected=tuple(c.project_id for c in chosen),
                mip_gap=rounded(solution.gap),
            )
        )
    return tuple(points)


# --- a synthetic instance for benchmarks -----------------------------------------------


@dataclass(frozen=True)
class SyntheticInstance:
    candidates: tuple[SelectionCandidate, ...]
    budgets: Mapping[Bucket, Decimal]
    capacity: Mapping[Cell, float]


def synthetic_instance(n: int, roles: int, periods: int, seed: int) -> SyntheticInstance:
    """A deterministic random instance: n candidates over 3 years x capex/opex buckets and
    roles x periods capacity cells. Budgets are 30 % of the total cost per bucket and
    capacity 35 % of the total demand per cell; about 0.5 % mandatory (small enough to fit),
    1 % excluded, 5 % with one dependency on an earlier candidate (so no cycles)."""
    if n < 0 or roles < 1 or periods < 1:
        raise ValueError("n >= 0, roles >= 1 and periods >= 1 are required")
    rng = np.random.default_rng(seed)
    years = ("2027", "2028", "2029")
    ids = [f"P{i:06d}" for i in range(n)]
    values = np.round(rng.uniform(0.0, 1.0, n), 6)
    capex_cents = np.round(np.exp(rng.normal(np.log(2e7), 1.0, n))).astype(np.int64)
    start_year = rng.integers(0, len(years), n)
    span_years = rng.integers(1, len(years) + 1, n)
    role_count = rng.integers(1, min(2, roles) + 1, n)
    start_period = rng.integers(0, periods, n)
    span_periods = rng.integers(1, 7, n)
    fte = np.round(rng.uniform(0.1, 2.0, (n, 2)), 1)
    has_dep = rng.uniform(0, 1, n) < 0.05
    dep_of = rng.integers(0, np.maximum(np.arange(n), 1))
    special = rng.uniform(0, 1, n)

    candidates: list[SelectionCandidate] = []
    for i in range(n):
        first = int(start_year[i])
        last = min(len(years), first + int(span_years[i]))
        share = int(capex_cents[i]) // (last - first)
        costs: dict[Bucket, Decimal] = {}
        for y in range(first, last):
            costs[(years[y], "capex")] = Decimal(share).scaleb(-2)
            costs[(years[y], "opex")] = Decimal(share // 5).scaleb(-2)
        chosen_roles = rng.choice(roles, size=int(role_count[i]), replace=False)
        demand: dict[Cell, float] = {}
        for k, r in enumerate(sorted(int(x) for x in chosen_roles)):
            for p in range(int(start_period[i]), min(periods, start_period[i] + span_periods[i])):
                demand[(f"role{r + 1}", f"M{p + 1:02d}")] = float(fte[i, k])
        depends = bool(has_dep[i]) and i > 0
        candidates.append(
            SelectionCandidate(
                project_id=ids[i],
                value=float(values[i]),
                costs=costs,
                demand=demand,
                mandatory=not depends and special[i] < 0.005,
                excluded=not depends and 0.005 <= special[i] < 0.015,
                dependencies=(ids[int(dep_of[i])],) if depends else (),
            )
        )
    total_cost: dict[Bucket, Decimal] = {}
    total_demand: dict[Cell, float] = {}
    for c in candidates:
        for b, amount in c.costs.items():
            total_cost[b] = total_cost.get(b, Decimal(0)) + amount
        for cell, d in c.demand.items():
            total_demand[cell] = total_demand.get(cell, 0.0) + d
    budgets = {
        b: (t * Decimal("0.30")).quantize(Decimal("0.01")) for b, t in sorted(total_cost.items())
    }
    capacity = {c: round(t * 0.35, 1) for c, t in sorted(total_demand.items())}
    return SyntheticInstance(tuple(candidates), budgets, capacity)
