"""What a selection run is made of: candidates, results, and the model built from the
candidates (everything that does not depend on the budget levels), with the exact check
that mandatory projects fit before anything is solved."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import Final, Literal

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
PRECISION: Final = 6

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


def rounded(value: float) -> float:
    return round(value, PRECISION) + 0.0


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
class Model:
    candidates: tuple[SelectionCandidate, ...]  # sorted by project_id
    index: Mapping[str, int]
    satisfied: frozenset[str]
    #: Candidates that cannot be selected -> (reason, the dependency that blocks it or None).
    blocked: Mapping[str, tuple[str, str | None]]
    #: Per mandatory project: itself and every candidate it transitively depends on.
    closure: Mapping[str, frozenset[str]]

    def deps(self, project_id: str) -> list[str]:
        """Dependencies that are candidates themselves, sorted."""
        return candidate_deps(self.candidates[self.index[project_id]], self.index)


def candidate_deps(candidate: SelectionCandidate, index: Mapping[str, int]) -> list[str]:
    return sorted(d for d in candidate.dependencies if d in index)


def dependency_order(
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
        stack = [iter(candidate_deps(candidates[index[root]], index))]
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
                stack.append(iter(candidate_deps(candidates[index[child]], index)))
    return order


def prepare(candidates: Iterable[SelectionCandidate], satisfied: Collection[str]) -> Model:
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
    for pid in dependency_order(ordered, index):
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
                for dep in candidate_deps(ordered[index[todo.pop()]], index):
                    if dep not in seen:
                        seen.add(dep)
                        todo.append(dep)
            closure[c.project_id] = frozenset(seen)
    return Model(ordered, index, done, dict(sorted(blocked.items())), closure)


# --- infeasibility: found exactly before solving -----------------------------------------


def check_mandatory(
    model: Model, budgets: Mapping[Bucket, Decimal], capacity: Mapping[Cell, float]
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
            f"need {number(needed)}, have {number(limit)}",
            [*kept, *extra, label],
        )


def number(amount: Decimal) -> str:
    """Exact money stays as is; float-born capacity prints rounded."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -PRECISION:
        return str(rounded(float(amount)))
    return str(amount)
