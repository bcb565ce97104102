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
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

#: A budget bucket, e.g. ("2027", "capex"); printed joined by "/".
Bucket = tuple[str, ...]
#: A capacity cell: (role, period).
Cell = tuple[str, str]

#: The single bucket `efficient_frontier` uses.
TOTAL: Final[Bucket] = ("total",)
#: Default time limit, seconds, per solve. The LP relaxation always runs to its end (it
#: gives the bound the gap is stated against); the limit applies to what follows, and
#: HiGHS checks it between phases, so a large instance can overrun it a little.
DEFAULT_TIME_LIMIT: Final = 10.0
#: Tolerance on capacity (floats: FTE or hours).
CAPACITY_TOLERANCE: Final = 1e-9
_PRECISION: Final = 6

SolverStatus = Literal["optimal", "time_limit"]


class SelectionError(ValueError):
    """The selection cannot be made; `conflict` names the projects and rows involved."""

    def __init__(self, message: str, conflict: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.conflict: tuple[str, ...] = tuple(conflict)


def bucket_label(bucket: Bucket) -> str:
    return "/".join(bucket)


def cell_label(cell: Cell) -> str:
    return f"{cell[0]}/{cell[1]}"


def _round(value: float) -> float:
    return round(value, _PRECISION) + 0.0


@dataclass(frozen=True)
class SelectionCandidate:
    """A project in a selection run. `value` is the caller's score (e.g. weighted score).

    Costs in buckets without a budget and demand in cells without a capacity are not
    constrained. Dependencies on projects that are neither candidates nor in `satisfied`
    cannot be met, so the candidate cannot be selected.
    """

    project_id: str
    value: float
    costs: Mapping[Bucket, Decimal] = field(default_factory=dict)
    demand: Mapping[Cell, float] = field(default_factory=dict)
    mandatory: bool = False
    excluded: bool = False
    dependencies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"candidate {self.project_id}"
        if not self.project_id:
            raise SelectionError("a candidate needs a project_id")
        if not math.isfinite(self.value):
            raise SelectionError(f"{where}: value must be finite, got {self.value}")
        for bucket, cost in self.costs.items():
            if not cost.is_finite() or cost < 0:
                raise SelectionError(
                    f"{where}: cost in {bucket_label(bucket)} must be >= 0, got {cost}"
                )
        for cell, amount in self.demand.items():
            if not math.isfinite(amount) or amount < 0:
                raise SelectionError(
                    f"{where}: demand in {cell_label(cell)} must be >= 0, got {amount}"
                )
        if self.mandatory and self.excluded:
            raise SelectionError(f"{where} is both mandatory and excluded", [self.project_id])

    def total_cost(self) -> Decimal:
        return sum((self.costs[b] for b in sorted(self.costs)), Decimal(0))


@dataclass(frozen=True)
class SelectionResult:
    """An optimal (or, at the time limit, best found) selection and why the rest missed.

    `not_selected` reasons: "excluded", "dependency <id> not selected", "budget <bucket>",
    "capacity <role>/<period>" (the rows adding it to the selection would overflow, joined
    by "; "), "no positive value", or - only when optimality is not proven (time limit or
    gap) - "better value elsewhere (budget <bucket> binding)" naming the tightest rows.
    """

    status: SolverStatus
    selected: tuple[str, ...]
    total_value: float
    cost_by_bucket: Mapping[Bucket, Decimal]
    capacity_use: Mapping[Cell, float]
    not_selected: Mapping[str, str]
    #: Relative gap between the solution and the solver's bound (0 when proven optimal).
    mip_gap: float
    solver_message: str


@dataclass(frozen=True)
class FrontierPoint:
    """The optimal selection at one total budget level (status "infeasible": see problem)."""

    budget: Decimal
    status: SolverStatus | Literal["infeasible"]
    value: float | None
    cost: Decimal | None
    selected: tuple[str, ...]
    problem: str | None = None
    #: Relative gap to the solver's bound (0 when proven optimal; see `SelectionResult`).
    mip_gap: float = 0.0


# --- the model: everything that does not depend on the budget levels --------------------


@dataclass(frozen=True)
class _Model:
    candidates: tuple[SelectionCandidate, ...]  # sorted by project_id
    index: Mapping[str, int]
    satisfied: frozenset[str]
    #: Candidates that cannot be selected -> (reason, the dependency that blocks it or None).
    blocked: Mapping[str, tuple[str, str | None]]
    #: Per mandatory project: itself and every candidate it transitively depends on.
    closure: Mapping[str, frozenset[str]]

    def deps(self, project_id: str) -> list[str]:
        """Dependencies that are candidates themselves, sorted."""
        return _candidate_deps(self.candidates[self.index[project_id]], self.index)


def _candidate_deps(candidate: SelectionCandidate, index: Mapping[str, int]) -> list[str]:
    return sorted(d for d in candidate.dependencies if d in index)


def _dependency_order(
    candidates: Sequence[SelectionCandidate], index: Mapping[str, int]
) -> list[str]:
    """Every id after its dependencies (iterative DFS); SelectionError on a cycle."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    order: list[str] = []
    for root in (c.project_id for c in candidates):
        if root in state:
            continue
        state[root] = 1
        path = [root]
        stack = [iter(_candidate_deps(candidates[index[root]], index))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                done = path.pop()
                state[done] = 2
                order.append(done)
                stack.pop()
            elif state.get(child) == 1:
                cycle = [*path[path.index(child) :], child]
                raise SelectionError(f"dependency cycle: {' -> '.join(cycle)}", cycle[:-1])
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(_candidate_deps(candidates[index[child]], index)))
    return order


def _prepare(candidates: Iterable[SelectionCandidate], satisfied: Collection[str]) -> _Model:
    ordered = tuple(sorted(candidates, key=lambda c: c.project_id))
    ids = [c.project_id for c in ordered]
    duplicates = sorted({a for a, b in pairwise(ids) if a == b})
    if duplicates:
        raise SelectionError(f"candidates listed more than once: {', '.join(duplicates)}")
    index = {pid: i for i, pid in enumerate(ids)}
    done = frozenset(satisfied)

    # Blocked: excluded, or needs something that is neither a candidate nor satisfied, or
    # needs a blocked candidate. Dependencies come first in the order, so one pass does.
    blocked: dict[str, tuple[str, str | None]] = {}
    for pid in _dependency_order(ordered, index):
        candidate = ordered[index[pid]]
        if candidate.excluded:
            blocked[pid] = ("excluded", None)
            continue
        for dep in sorted(candidate.dependencies):
            unmet = dep in blocked if dep in index else dep not in done
            if unmet:
                blocked[pid] = (f"dependency {dep} not selected", dep)
                break

    closure: dict[str, frozenset[str]] = {}
    for c in ordered:
        if c.mandatory:
            seen = {c.project_id}
            todo = [c.project_id]
            while todo:
                for dep in _candidate_deps(ordered[index[todo.pop()]], index):
                    if dep not in seen:
                        seen.add(dep)
                        todo.append(dep)
            closure[c.project_id] = frozenset(seen)
    return _Model(ordered, index, done, dict(sorted(blocked.items())), closure)


# --- infeasibility: found exactly before solving -----------------------------------------


def _check_mandatory(
    model: _Model, budgets: Mapping[Bucket, Decimal], capacity: Mapping[Cell, float]
) -> None:
    """Raise SelectionError naming the smallest conflicting set if the mandatory projects
    (with their dependencies) cannot all be selected. With costs and demand >= 0 this is
    exactly the feasibility of the MILP."""
    for pid in sorted(model.closure):
        if pid in model.blocked:
            chain = [pid]
            while (step := model.blocked.get(chain[-1], ("", None))[1]) is not None:
                chain.append(step)
            root = chain[-1]
            why = (
                "is excluded"
                if root in model.index
                else "is neither a candidate nor a satisfied dependency"
            )
            raise SelectionError(
                f"mandatory {pid} cannot be selected: {' -> '.join(chain)}, and {root} {why}",
                chain,
            )

    by_id = {c.project_id: c for c in model.candidates}
    # Every row as exact Decimal amounts per project; capacity gets a float tolerance.
    rows: list[tuple[str, Mapping[str, Decimal], Decimal, Decimal]] = []
    members = sorted(set().union(*model.closure.values()))
    amounts: Mapping[str, Decimal]
    for b in sorted(budgets):
        amounts = {m: by_id[m].costs.get(b, Decimal(0)) for m in members}
        rows.append((f"budget {bucket_label(b)}", amounts, budgets[b], Decimal(0)))
    for c in sorted(capacity):
        amounts = {m: Decimal(by_id[m].demand.get(c, 0.0)) for m in members}
        tolerance = Decimal(CAPACITY_TOLERANCE * max(1.0, capacity[c]))
        rows.append((f"capacity {cell_label(c)}", amounts, Decimal(capacity[c]), tolerance))

    def need(mandatory: Iterable[str], amounts: Mapping[str, Decimal]) -> Decimal:
        covered = set().union(*(model.closure[m] for m in mandatory))
        return sum((amounts[m] for m in sorted(covered)), Decimal(0))

    everyone = sorted(model.closure)
    conflicts: list[tuple[int, str, list[str], Decimal, Decimal]] = []
    for label, amounts, limit, tolerance in rows:
        if need(everyone, amounts) <= limit + tolerance:
            continue
        # Deletion filter: drop each mandatory project whose removal keeps the overflow.
        kept = list(everyone)
        for pid in everyone:
            rest = [k for k in kept if k != pid]
            if rest and need(rest, amounts) > limit + tolerance:
                kept = rest
        conflicts.append((len(kept), label, kept, need(kept, amounts), limit))
    if conflicts:
        _size, label, kept, needed, limit = min(conflicts, key=lambda c: (c[0], c[1]))
        extra = sorted(set().union(*(model.closure[k] for k in kept)) - set(kept))
        with_deps = f" (with their dependencies {', '.join(extra)})" if extra else ""
        raise SelectionError(
            f"mandatory {', '.join(kept)}{with_deps} overflow {label}: "
            f"need {_number(needed)}, have {_number(limit)}",
            [*kept, *extra, label],
        )


def _number(amount: Decimal) -> str:
    """Exact money stays as is; float-born capacity prints rounded."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_PRECISION:
        return str(_round(float(amount)))
    return str(amount)


# --- the MILP --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Program:
    """The MILP in matrix form: maximise values @ x, matrix @ x <= upper, lower <= x <= ..."""

    matrix: sparse.csr_array  # budget rows, capacity rows (scaled to O(1)), dependency rows
    upper: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    bucket_rows: Mapping[Bucket, int]
    x_lower: npt.NDArray[np.float64]
    x_upper: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Solution:
    status: SolverStatus
    chosen: list[int]
    gap: float
    message: str


def _program(
    model: _Model, budgets: Mapping[Bucket, Decimal], capacity: Mapping[Cell, float]
) -> _Program:
    cands = model.candidates
    bucket_rows = {b: r for r, b in enumerate(sorted(budgets))}
    cell_rows = {c: len(bucket_rows) + r for r, c in enumerate(sorted(capacity))}
    rows: list[int] = []
    cols: list[int] = []
    data: list[float] = []
    for j, cand in enumerate(cands):
        for bucket, cost in cand.costs.items():
            if bucket in bucket_rows and cost:
                rows.append(bucket_rows[bucket])
                cols.append(j)
                data.append(float(cost))
        for cell, amount in cand.demand.items():
            if cell in cell_rows and amount:
                rows.append(cell_rows[cell])
                cols.append(j)
                data.append(amount)
    limits = [float(budgets[b]) for b in bucket_rows] + [capacity[c] for c in cell_rows]
    for j, cand in enumerate(cands):
        for dep in model.deps(cand.project_id):
            rows += [len(limits), len(limits)]
            cols += [j, model.index[dep]]
            data += [1.0, -1.0]
            limits.append(0.0)
    upper = np.asarray(limits, dtype=np.float64)
    entries = np.asarray(data, dtype=np.float64)
    row_index = np.asarray(rows, dtype=np.int64)
    # Scale budget and capacity rows to O(1) so the solver's tolerances are relative.
    row_max = np.zeros(len(limits))
    np.maximum.at(row_max, row_index, np.abs(entries))
    scale = np.maximum(np.maximum(row_max, np.abs(upper)), 1.0)
    matrix = sparse.csr_array(
        (entries / scale[row_index], (row_index, np.asarray(cols, dtype=np.int64))),
        shape=(len(limits), len(cands)),
    )
    return _Program(
        matrix=matrix,
        upper=upper / scale,
        scale=scale,
        bucket_rows=bucket_rows,
        x_lower=np.array([1.0 if c.mandatory else 0.0 for c in cands]),
        x_upper=np.array([0.0 if c.project_id in model.blocked else 1.0 for c in cands]),
        values=np.array([c.value for c in cands], dtype=np.float64),
    )


def _relative_gap(upper: float, lower: float) -> float:
    if upper - lower <= 1e-9 * max(1.0, abs(lower)):
        return 0.0
    return (upper - lower) / max(abs(lower), 1e-9)


def _greedy(
    model: _Model,
    program: _Program,
    x_lp: npt.NDArray[np.float64],
    reduced: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """A feasible selection: the mandatory closure, then candidates by LP value (desc) and
    reduced cost, each added with its unselected dependencies when every row still fits."""
    chosen = np.zeros(len(model.candidates), dtype=np.bool_)
    for members in model.closure.values():
        chosen[[model.index[m] for m in members]] = True
    columns = program.matrix.tocsc()
    used = program.matrix @ chosen.astype(np.float64)
    limit = program.upper + 1e-9
    worth = (program.x_upper > 0) & ((program.values > 0) | (x_lp > 1e-9))
    for j in np.lexsort((reduced, -x_lp)):
        if chosen[j] or not worth[j]:
            continue
        bundle = _with_dependencies(model, int(j), chosen)
        if any(program.x_upper[k] == 0 for k in bundle) or program.values[bundle].sum() <= 0:
            continue
        change = np.zeros_like(used)
        for k in bundle:
            start, end = columns.indptr[k], columns.indptr[k + 1]
            change[columns.indices[start:end]] += columns.data[start:end]
        if np.all(used + change <= limit):
            chosen[bundle] = True
            used += change
    return chosen


def _with_dependencies(model: _Model, j: int, chosen: npt.NDArray[np.bool_]) -> list[int]:
    """j and every candidate it transitively depends on that is not chosen yet."""
    bundle = [j]
    todo = [j]
    while todo:
        for dep in model.deps(model.candidates[todo.pop()].project_id):
            k = model.index[dep]
            if not chosen[k] and k not in bundle:
                bundle.append(k)
                todo.append(k)
    return bundle


def _optimise(
    model: _Model, program: _Program, *, time_limit: float | None, mip_rel_gap: float
) -> _Solution:
    """LP relaxation (an upper bound), a greedy selection from it (a lower bound), fixing of
    every variable whose reduced cost proves it cannot move in a better selection, then
    the MILP on what is left. Exact: the answer is the better of the greedy and the MILP."""
    started = time.perf_counter()
    n = len(model.candidates)
    costs = -program.values  # the solvers minimise
    rows = program.matrix.shape[0]
    lp = linprog(
        costs,
        A_ub=program.matrix if rows else None,
        b_ub=program.upper if rows else None,
        bounds=np.column_stack([program.x_lower, program.x_upper]),
        method="highs",
        # Not limited: without the relaxation there is no bound to state a gap against,
        # and it takes a small part of the time (about 0.01 s at 1,000 candidates).
    )
    if lp.status != 0:
        raise SelectionError(f"the LP relaxation failed: {lp.message}")
    x_lp = np.asarray(lp.x, dtype=np.float64)
    duals = lp.ineqlin.marginals if rows else np.zeros(0)
    reduced = costs - program.matrix.T @ duals if rows else costs.copy()
    bound = -float(lp.fun)
    greedy = _greedy(model, program, x_lp, reduced)
    greedy_value = math.fsum(program.values[greedy])
    if _relative_gap(bound, greedy_value) <= mip_rel_gap:
        gap = _relative_gap(bound, greedy_value)
        return _Solution("optimal", list(np.flatnonzero(greedy)), gap, "LP bound reached")
    remaining = None if time_limit is None else time_limit - (time.perf_counter() - started)
    if remaining is not None and remaining <= 0:
        gap = _relative_gap(bound, greedy_value)
        return _Solution("time_limit", list(np.flatnonzero(greedy)), gap, "time limit")

    # Reduced-cost fixing: moving x_j off its LP bound costs at least |reduced_j| of the LP
    # bound; when that drops below the greedy value, no better selection moves it.
    margin = 1e-7 * max(1.0, abs(greedy_value))
    x_lower, x_upper = program.x_lower.copy(), program.x_upper.copy()
    at_zero = (x_lp < 1e-9) & (bound - reduced < greedy_value - margin)
    at_one = (x_lp > 1 - 1e-9) & (bound + reduced < greedy_value - margin)
    x_upper[at_zero] = 0.0
    x_lower[at_one] = 1.0
    options: dict[str, float | bool] = {"disp": False, "mip_rel_gap": mip_rel_gap}
    if remaining is not None:
        options["time_limit"] = remaining
    result = milp(
        costs,
        integrality=np.ones(n),
        bounds=Bounds(x_lower, x_upper),
        constraints=[LinearConstraint(program.matrix, -np.inf, program.upper)] if rows else [],
        options=options,
    )
    # Any selection better than the greedy one lies in the restricted problem, so the
    # optimum is at most max(restricted bound, greedy value), and at most the LP bound.
    restricted_bound = -math.inf if result.status == 2 else bound
    dual_bound = getattr(result, "mip_dual_bound", None)
    if result.status != 2 and dual_bound is not None and math.isfinite(dual_bound):
        restricted_bound = min(bound, -float(dual_bound))
    best, value = greedy, greedy_value
    if result.x is not None:
        found = np.asarray(result.x) > 0.5
        if math.fsum(program.values[found]) >= greedy_value:
            best, value = found, math.fsum(program.values[found])
    gap = _relative_gap(min(bound, max(restricted_bound, greedy_value)), value)
    proven = result.status in (0, 2) or gap <= mip_rel_gap
    status: SolverStatus = "optimal" if proven else "time_limit"
    return _Solution(status, list(np.flatnonzero(best)), gap, str(result.message))


def _solve(
    model: _Model,
    budgets: Mapping[Bucket, Decimal],
    capacity: Mapping[Cell, float],
    *,
    time_limit: float | None,
    mip_rel_gap: float,
) -> _Solution:
    program = _program(model, budgets, capacity)
    for _attempt in range(3):
        solution = _optimise(model, program, time_limit=time_limit, mip_rel_gap=mip_rel_gap)
        # The solvers' tolerances are floating point; money is checked exactly, and a
        # budget row overrun by rounding is tightened by twice the overrun and re-solved.
        over = False
        for bucket, r in program.bucket_rows.items():
            used = sum(
                (model.candidates[j].costs.get(bucket, Decimal(0)) for j in solution.chosen),
                Decimal(0),
            )
            if used > budgets[bucket]:
                program.upper[r] -= 2 * float(used - budgets[bucket]) / program.scale[r]
                over = True
        if not over:
            return solution
    raise SelectionError("the solver's selections kept exceeding a budget by rounding")


# --- explaining the result -------------------------------------------------------------


def _explain(
    model: _Model,
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
    model: _Model,
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
    cap = dict(capacity or {})
    _check_inputs(budgets, cap)
    model = _prepare(candidates, satisfied)
    _check_mandatory(model, budgets, cap)
    if model.candidates:
        solution = _solve(model, budgets, cap, time_limit=time_limit, mip_rel_gap=mip_rel_gap)
    else:
        solution = _Solution("optimal", [], 0.0, "no candidates")
    indexes = solution.chosen
    chosen = tuple(model.candidates[j].project_id for j in indexes)
    cost, use = _usage(model, chosen, budgets, cap)
    return SelectionResult(
        status=solution.status,
        selected=chosen,
        total_value=_round(math.fsum(model.candidates[j].value for j in indexes)),
        cost_by_bucket=cost,
        capacity_use={c: _round(u) for c, u in use.items()},
        not_selected=_explain(model, set(chosen), budgets, cap, cost, use),
        mip_gap=_round(solution.gap),
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
    model = _prepare(totals, satisfied)
    points: list[FrontierPoint] = []
    for level in budgets:
        limit = {TOTAL: level}
        try:
            _check_mandatory(model, limit, cap)
        except SelectionError as error:
            points.append(FrontierPoint(level, "infeasible", None, None, (), str(error)))
            continue
        if not model.candidates:
            points.append(FrontierPoint(level, "optimal", 0.0, Decimal(0), ()))
            continue
        solution = _solve(model, limit, cap, time_limit=time_limit, mip_rel_gap=mip_rel_gap)
        status, indexes = solution.status, solution.chosen
        chosen = [model.candidates[j] for j in indexes]
        points.append(
            FrontierPoint(
                budget=level,
                status=status,
                value=_round(math.fsum(c.value for c in chosen)),
                cost=sum((c.costs[TOTAL] for c in chosen), Decimal(0)),
                selected=tuple(c.project_id for c in chosen),
                mip_gap=_round(solution.gap),
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
