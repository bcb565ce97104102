"""The portfolio as prioritization sees it (folded from the log), and the ranking,
selection and frontier decisions computed on it.

The same `PortfolioView.apply` builds the live projection and the recomputation of any past
decision from the log at its position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from contracts import ledger as lg
from contracts import objectives as o
from contracts import prioritization as pr
from contracts import projects as p
from contracts.base import ErrorCode, FieldError, RecordedEvent
from contracts.registry import payload_of
from domain.kernel import Rejected
from domain.prioritization import scoring, selection
from domain.prioritization.capacity import CapacityPicture, LedgerCapacity
from domain.projects import ProjectProfile, evolve_profile, profile_from

#: Statuses a project can still be ranked and selected in.
OPEN = frozenset({p.ProjectStatus.PROPOSED, p.ProjectStatus.UNDER_REVIEW, p.ProjectStatus.APPROVED})


# --- the portfolio as prioritization sees it --------------------------------------------


#: A candidate is the project's profile, the fold prioritization shares with reporting.
CandidateData = ProjectProfile


def buckets(candidate: ProjectProfile) -> dict[tuple[str, ...], Decimal]:
    """Costs by (year, capex|opex), plus the year and overall totals."""
    found: dict[tuple[str, ...], Decimal] = {}
    for yearly in candidate.costs:
        year = str(yearly.year)
        for kind in ("capex", "opex"):
            amount: Decimal = getattr(yearly, kind)
            found[(year, kind)] = found.get((year, kind), Decimal(0)) + amount
            found[(year, "total")] = found.get((year, "total"), Decimal(0)) + amount
    found[("total", "capex")] = candidate.capex
    found[("total", "opex")] = candidate.opex
    found[("total", "total")] = candidate.cost
    return found


@dataclass
class ModelData:
    model_id: str
    method: pr.ScoringMethod
    weights: dict[str, float]
    version: int


#: Used until a model is configured: every criterion weighs the same.
DEFAULT_MODEL = ModelData(
    model_id="default",
    method=pr.ScoringMethod.WEIGHTED,
    weights=scoring.normalise_weights(dict.fromkeys(pr.CRITERIA, 1.0)),
    version=0,
)


@dataclass
class PortfolioView:
    candidates: dict[str, CandidateData] = field(default_factory=dict)
    objective_weights: dict[str, float] = field(default_factory=dict)
    models: dict[str, ModelData] = field(default_factory=dict)
    #: The ranks of the last decided ranking, per model: what rank changes are measured from.
    last_ranks: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The ledger's capacity and demand by role and month (selection's default capacity).
    capacity: LedgerCapacity = field(default_factory=LedgerCapacity)
    position: int = 0

    def apply(self, event: RecordedEvent) -> bool:
        """Fold one event in; True when it changes what a ranking would be computed from."""
        self.position = event.position
        payload = payload_of(event.envelope)
        match payload:
            case p.ProjectProposed():
                self.candidates[payload.project_id] = profile_from(payload)
                return True
            case p.ProjectEstimateUpdated():
                found = self.candidates.get(payload.project_id)
                if found is not None:
                    self.candidates[payload.project_id] = evolve_profile(found, payload)
                return found is not None
            case o.ObjectiveDefined() | o.ObjectiveReweighted():
                self.objective_weights[payload.objective_id] = float(payload.weight)
                return True
            case o.ObjectiveRetired():
                return self.objective_weights.pop(payload.objective_id, None) is not None
            case pr.ScoringModelConfigured():
                earlier = self.models.get(payload.model_id)
                self.models[payload.model_id] = ModelData(
                    model_id=payload.model_id,
                    method=payload.method,
                    weights=dict(payload.weights),
                    version=(earlier.version if earlier else 0) + 1,
                )
                return True
            case pr.RankingDecided():
                self.last_ranks[payload.model_id] = {r.project_id: r.rank for r in payload.ranking}
                return False
            case lg.CapacitySet() | lg.DemandAssigned():
                self.capacity.apply(payload)
                return False  # capacity bounds a selection; it does not move a ranking
        if event.envelope.aggregate_type == p.AGGREGATE:
            found = self.candidates.get(event.envelope.aggregate_id)
            if found is None:
                return False
            now = self.candidates[found.project_id] = evolve_profile(found, payload)
            return (found.status in OPEN) != (now.status in OPEN)
        return False

    def model(self, model_id: str) -> ModelData:
        if model_id in self.models:
            return self.models[model_id]
        if model_id == DEFAULT_MODEL.model_id:
            return DEFAULT_MODEL
        raise Rejected(ErrorCode.NOT_FOUND, f"no scoring model {model_id!r} is configured")

    def status_of(self, project_id: str) -> p.ProjectStatus | None:
        found = self.candidates.get(project_id)
        return None if found is None else found.status

    def ledger_capacity(self) -> CapacityPicture:
        """The ledger's capacity left once running projects take theirs, and the others'
        demand (see domain.prioritization.capacity for which statuses hold capacity)."""
        return self.capacity.picture(self.status_of)

    def open_candidates(self) -> list[CandidateData]:
        return [c for _, c in sorted(self.candidates.items()) if c.status in OPEN]

    def scoring_candidates(self) -> list[scoring.Candidate]:
        return [
            scoring.Candidate.from_inputs(
                c.project_id,
                c.cost,
                c.scoring,
                strategic_alignment=scoring.strategic_alignment(
                    c.objectives, self.objective_weights
                ),
                mandatory=c.mandatory,
            )
            for c in self.open_candidates()
        ]


# --- decisions --------------------------------------------------------------------------


def scores(
    view: PortfolioView, model: ModelData
) -> tuple[dict[str, float], dict[str, dict[str, float | None]], list[pr.Unscorable]]:
    """Score of every open candidate under a model, its breakdown, and who cannot be scored."""
    candidates = view.scoring_candidates()
    if model.method == pr.ScoringMethod.WSJF:
        found = scoring.wsjf_scores(candidates)
        totals = {s.project_id: s.score for s in found if s.score is not None}
        breakdown: dict[str, dict[str, float | None]] = {
            pid: {"wsjf": score} for pid, score in totals.items()
        }
        unscorable = [
            pr.Unscorable(project_id=s.project_id, missing=s.missing)
            for s in found
            if s.score is None
        ]
        return totals, breakdown, unscorable
    weighted = scoring.weighted_scores(candidates, model.weights)
    totals = weighted.totals()
    breakdown = {
        s.project_id: {
            part.criterion: (None if part.status == "missing" else part.contribution)
            for part in s.breakdown
        }
        for s in weighted.scores
    }
    return totals, breakdown, []


def decide_ranking(view: PortfolioView, model_id: str = "default") -> pr.RankingDecided:
    model = view.model(model_id)
    totals, breakdown, unscorable = scores(view, model)
    entries = scoring.rank(totals, view.last_ranks.get(model_id))
    return pr.RankingDecided(
        model_id=model_id,
        model_version=model.version,
        method=model.method,
        weights=dict(model.weights),
        computed_at_position=view.position,
        candidates=tuple(c.project_id for c in view.open_candidates()),
        ranking=tuple(
            pr.RankedProject(
                project_id=e.project_id,
                rank=e.rank,
                score=e.score,
                breakdown=breakdown[e.project_id],
                previous_rank=e.previous_rank,
            )
            for e in entries
        ),
        unscorable=tuple(unscorable),
    )


def same_ranking(a: pr.RankingDecided, b: pr.RankingDecided) -> bool:
    """Whether a new ranking says anything the previous one did not."""
    return (a.ranking, a.unscorable, a.weights, a.candidates) == (
        b.ranking,
        b.unscorable,
        b.weights,
        b.candidates,
    )


def _bucket(name: str) -> tuple[str, ...]:
    return tuple(name.split("/"))


def _cell(name: str) -> tuple[str, str]:
    role, period = name.split("/")
    return role, period


def solver_note(status: str, gap: float, time_limit: float | None) -> str | None:
    """What the answer says when optimality is not proven: the solver stopped at the time
    limit with the best selection found, at most `gap` below the optimum."""
    if status != "time_limit":
        return None
    limit = "" if time_limit is None else f" of {time_limit:g} s"
    return (
        f"the solver stopped at its time limit{limit}: this is the best selection found, "
        f"proven within {gap * 100:.2f}% of the optimal value"
    )


def _capacity(
    view: PortfolioView,
    ledger: bool,
    capacity: Mapping[str, float],
    demand: Mapping[str, Mapping[str, float]],
) -> tuple[dict[selection.Cell, float], dict[str, dict[selection.Cell, float]]]:
    """Capacity per cell and demand per project: the ledger's (when `ledger`), with every
    cell the caller names replacing the ledger's figure (a demand of 0 removes it)."""
    picture = view.ledger_capacity() if ledger else None
    cells = dict(picture.available) if picture else {}
    cells.update({_cell(c): v for c, v in capacity.items()})
    needs: dict[str, dict[selection.Cell, float]] = {}
    for pid in set(picture.demand if picture else ()) | set(demand):
        found = dict(picture.demand.get(pid, {})) if picture else {}
        found.update({_cell(c): v for c, v in demand.get(pid, {}).items()})
        needs[pid] = {c: v for c, v in sorted(found.items()) if v}
        # A month of a role the ledger plans, with no figure there: none to give, as the
        # ledger's over-allocation check says (a role the ledger does not plan is unbound).
        if ledger:
            for cell in needs[pid]:
                if cell not in cells and view.capacity.knows(cell[0]):
                    cells[cell] = 0.0
    return dict(sorted(cells.items())), needs


def decide_selection(
    view: PortfolioView,
    scenario: pr.Scenario,
    *,
    time_limit: float | None = selection.DEFAULT_TIME_LIMIT,
) -> pr.SelectionOutcome:
    model = view.model(scenario.model_id)
    if scenario.weights is not None:
        model = replace(
            model,
            method=pr.ScoringMethod.WEIGHTED,
            weights=scoring.normalise_weights({k: float(v) for k, v in scenario.weights.items()}),
        )
    totals, _, unscorable = scores(view, model)
    named = (
        set(scenario.mandatory)
        | set(scenario.excluded)
        | set(scenario.cost_multipliers)
        | set(scenario.demand)
    )
    unknown = sorted(named - set(view.candidates))
    if unknown:
        raise Rejected(
            ErrorCode.NOT_FOUND, f"unknown projects in the scenario: {', '.join(unknown)}"
        )
    capacity, demand = _capacity(view, scenario.ledger, scenario.capacity, scenario.demand)
    wanted = {_bucket(b) for b in scenario.budgets}
    candidates = []
    for data in view.open_candidates():
        if data.project_id not in totals:
            continue
        multiplier = scenario.cost_multipliers.get(data.project_id, Decimal(1))
        costs = {b: amount * multiplier for b, amount in buckets(data).items() if b in wanted}
        candidates.append(
            selection.SelectionCandidate(
                project_id=data.project_id,
                value=totals[data.project_id],
                costs=costs,
                demand=demand.get(data.project_id, {}),
                mandatory=data.mandatory or data.project_id in scenario.mandatory,
                excluded=data.project_id in scenario.excluded,
                dependencies=data.dependencies,
            )
        )
    budgets = {_bucket(b): amount * scenario.budget_scale for b, amount in scenario.budgets.items()}
    satisfied = [
        c.project_id
        for c in view.candidates.values()
        if c.status not in OPEN
        and c.status != p.ProjectStatus.REJECTED
        and c.status != p.ProjectStatus.CANCELLED
    ]
    try:
        result = selection.select(
            candidates, budgets, capacity, satisfied=satisfied, time_limit=time_limit
        )
    except selection.SelectionError as error:
        raise Rejected(
            ErrorCode.VALIDATION_FAILED,
            str(error),
            tuple(
                FieldError(field="scenario", message="conflict", input=c) for c in error.conflict
            ),
        ) from error
    not_selected = dict(result.not_selected)
    for missing in unscorable:
        not_selected[missing.project_id] = f"not scorable: missing {', '.join(missing.missing)}"
    return pr.SelectionOutcome(
        scenario=scenario,
        model_id=model.model_id,
        model_version=model.version,
        computed_at_position=view.position,
        candidates=tuple(c.project_id for c in candidates),
        selected=result.selected,
        total_value=result.total_value,
        cost_by_bucket={
            selection.bucket_label(b): str(v) for b, v in sorted(result.cost_by_bucket.items())
        },
        capacity_use={selection.cell_label(c): v for c, v in sorted(result.capacity_use.items())},
        not_selected=tuple(
            pr.NotSelected(project_id=pid, reason=reason)
            for pid, reason in sorted(not_selected.items())
        ),
        solver_status=result.status,
        capacity={selection.cell_label(c): v for c, v in capacity.items()},
        ledger_capacity=scenario.ledger,
        mip_gap=result.mip_gap,
        time_limit_seconds=time_limit,
        note=solver_note(result.status, result.mip_gap, time_limit),
    )


def frontier(
    view: PortfolioView,
    query: pr.FrontierQuery,
    *,
    time_limit: float | None = selection.DEFAULT_TIME_LIMIT,
) -> pr.FrontierAnswer:
    """The best value reachable at each budget level: where more money stops buying value.
    Within the ledger's capacity (net of running projects) unless `query.ledger` is off."""
    model = view.model(query.model_id)
    totals, _, _ = scores(view, model)
    capacity, demand = _capacity(view, query.ledger, {}, {})
    candidates = [
        selection.SelectionCandidate(
            project_id=c.project_id,
            value=totals[c.project_id],
            costs={selection.TOTAL: c.cost},
            demand=demand.get(c.project_id, {}),
            mandatory=c.mandatory,
            dependencies=c.dependencies,
        )
        for c in view.open_candidates()
        if c.project_id in totals
    ]
    step = (query.budget_to - query.budget_from) / (query.steps - 1)
    levels = [query.budget_from + step * i for i in range(query.steps)]
    try:
        points = selection.efficient_frontier(
            candidates, levels, capacity, satisfied=_delivered(view), time_limit=time_limit
        )
    except selection.SelectionError as error:
        raise Rejected(ErrorCode.VALIDATION_FAILED, str(error)) from error
    return pr.FrontierAnswer(
        points=tuple(
            pr.FrontierPoint(
                budget=str(point.budget.quantize(Decimal("0.01"))),
                status=point.status,
                value=point.value,
                cost=None if point.cost is None else str(point.cost),
                selected=point.selected,
                problem=point.problem,
                mip_gap=point.mip_gap,
                note=solver_note(point.status, point.mip_gap, time_limit),
            )
            for point in points
        ),
        capacity={selection.cell_label(c): v for c, v in capacity.items()},
    )


def _delivered(view: PortfolioView) -> list[str]:
    """Projects under way or done count as met dependencies."""
    return [
        c.project_id
        for c in view.candidates.values()
        if c.status
        in (p.ProjectStatus.IN_PROGRESS, p.ProjectStatus.ON_HOLD, p.ProjectStatus.COMPLETED)
    ]
