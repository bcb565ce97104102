"""The selection MILP in matrix form and its solve with SciPy's HiGHS (see
`domain.prioritization.selection` for the formulation): LP bound, greedy rounding,
reduced-cost fixing, then the MILP on what is left, within a time limit."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from domain.prioritization.candidates import (
    Bucket,
    Cell,
    Model,
    SelectionError,
    SolverStatus,
)

if TYPE_CHECKING:
    from scipy import sparse


# --- the MILP --------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """The MILP in matrix form: maximise values @ x, matrix @ x <= upper, lower <= x <= ..."""

    matrix: sparse.csr_array  # budget rows, capacity rows (scaled to O(1)), dependency rows
    upper: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    bucket_rows: Mapping[Bucket, int]
    x_lower: npt.NDArray[np.float64]
    x_upper: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Solution:
    status: SolverStatus
    chosen: list[int]
    gap: float
    message: str


def build_program(
    model: Model, budgets: Mapping[Bucket, Decimal], capacity: Mapping[Cell, float]
) -> Program:
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
    from scipy import sparse  # here: scipy costs every service half a second at start

    matrix = sparse.csr_array(
        (entries / scale[row_index], (row_index, np.asarray(cols, dtype=np.int64))),
        shape=(len(limits), len(cands)),
    )
    return Program(
        matrix=matrix,
        upper=upper / scale,
        scale=scale,
        bucket_rows=bucket_rows,
        x_lower=np.array([1.0 if c.mandatory else 0.0 for c in cands]),
        x_upper=np.array([0.0 if c.project_id in model.blocked else 1.0 for c in cands]),
        values=np.array([c.value for c in cands], dtype=np.float64),
    )


def relative_gap(upper: float, lower: float) -> float:
    if upper - lower <= 1e-9 * max(1.0, abs(lower)):
        return 0.0
    return (upper - lower) / max(abs(lower), 1e-9)


def greedy_selection(
    model: Model,
    program: Program,
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
        bundle = with_dependencies(model, int(j), chosen)
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


def with_dependencies(model: Model, j: int, chosen: npt.NDArray[np.bool_]) -> list[int]:
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


def optimise(
    model: Model, program: Program, *, time_limit: float | None, mip_rel_gap: float
) -> Solution:
    """LP relaxation (an upper bound), a greedy selection from it (a lower bound), fixing of
    every variable whose reduced cost proves it cannot move in a better selection, then
    the MILP on what is left. Exact: the answer is the better of the greedy and the MILP."""
    from scipy.optimize import Bounds, LinearConstraint, linprog, milp  # as above

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
    greedy = greedy_selection(model, program, x_lp, reduced)
    greedy_value = math.fsum(program.values[greedy])
    if relative_gap(bound, greedy_value) <= mip_rel_gap:
        gap = relative_gap(bound, greedy_value)
        return Solution("optimal", list(np.flatnonzero(greedy)), gap, "LP bound reached")
    remaining = None if time_limit is None else time_limit - (time.perf_counter() - started)
    if remaining is not None and remaining <= 0:
        gap = relative_gap(bound, greedy_value)
        return Solution("time_limit", list(np.flatnonzero(greedy)), gap, "time limit")

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
    gap = relative_gap(min(bound, max(restricted_bound, greedy_value)), value)
    proven = result.status in (0, 2) or gap <= mip_rel_gap
    status: SolverStatus = "optimal" if proven else "time_limit"
    return Solution(status, list(np.flatnonzero(best)), gap, str(result.message))


#: The share of a time limit kept back from the MILP: for what follows it (re-checking
#: budgets, explaining what was left out) and because HiGHS looks at its clock only now and
#: then (its sub-solves on a new incumbent ran up to 0.25 s past a 1.8 s limit, and up to
#: 0.5 s past a 1.6 s one when the machine ran at half speed), so that the whole answer,
#: not only the solver, stays within the limit.
TIME_RESERVE = 0.35


def time_left(
    time_limit: float | None, started: float, reserve: float = TIME_RESERVE
) -> float | None:
    """What a solver may still spend of `time_limit` seconds counted from `started`
    (a `time.perf_counter()`), keeping `reserve` of it back; None when there is no limit."""
    if time_limit is None:
        return None
    return max(0.0, time_limit * (1 - reserve) - (time.perf_counter() - started))


def solve(
    model: Model,
    budgets: Mapping[Bucket, Decimal],
    capacity: Mapping[Cell, float],
    *,
    time_limit: float | None,
    mip_rel_gap: float,
) -> Solution:
    started = time.perf_counter()
    program = build_program(model, budgets, capacity)
    for _attempt in range(3):
        left = time_left(time_limit, started, reserve=0.0)  # the caller kept the reserve
        solution = optimise(model, program, time_limit=left, mip_rel_gap=mip_rel_gap)
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
