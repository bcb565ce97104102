"""Prioritization: scoring models (commands), rankings and selections (the service's own
decisions, each carrying the inputs it was computed from), and what-if scenarios."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from contracts.base import (
    AppendedEvent,
    Command,
    FrozenModel,
    Identifier,
    Money,
    Name,
    Rationale,
    new_id,
)

SCORING_MODEL = "scoring_model"
RANKING = "ranking"
SELECTION = "selection"
#: The aggregate `PortfolioView` folds (prioritization's own read of the log).
AGGREGATE = SCORING_MODEL

CRITERIA = ("value", "strategic_alignment", "npv", "risk", "urgency", "cost")


class ScoringMethod(StrEnum):
    WEIGHTED = "weighted"
    WSJF = "wsjf"
    AHP = "ahp"


def _known_criteria(names: tuple[str, ...] | list[str]) -> None:
    unknown = sorted(set(names) - set(CRITERIA))
    if unknown:
        raise ValueError(f"unknown criteria {', '.join(unknown)}; known: {', '.join(CRITERIA)}")


class ConfigureScoringModel(Command):
    """Choose how projects are scored. Weighted: `weights` per criterion. AHP: a pairwise
    comparison matrix over `ahp_criteria` on the 1/9..9 scale (refused when CR ≥ 0.10).
    WSJF: no parameters."""

    aggregate_type = SCORING_MODEL
    id_field = "model_id"
    model_id: Identifier = "default"
    method: ScoringMethod
    weights: dict[str, Annotated[Decimal, Field(ge=0, le=1000)]] = Field(default_factory=dict)
    ahp_criteria: tuple[str, ...] = Field(default=(), max_length=10)
    ahp_matrix: tuple[tuple[float, ...], ...] = Field(default=(), max_length=10)
    rationale: Rationale

    @field_validator("weights")
    @classmethod
    def _weights_known(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        _known_criteria(list(value))
        return value

    @field_validator("ahp_criteria")
    @classmethod
    def _criteria_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _known_criteria(value)
        if len(set(value)) != len(value):
            raise ValueError("a criterion is listed more than once")
        return value

    @model_validator(mode="after")
    def _parameters_fit_the_method(self) -> Self:
        if self.method == ScoringMethod.WEIGHTED and not any(self.weights.values()):
            raise ValueError("weighted scoring needs at least one weight above 0")
        if self.method == ScoringMethod.AHP and len(self.ahp_criteria) < 2:
            raise ValueError("AHP needs at least two criteria and their pairwise matrix")
        return self


class ScoringModelConfigured(FrozenModel):
    model_id: str
    method: ScoringMethod
    #: Normalised to sum 1 (from the eigenvector for AHP); empty for WSJF.
    weights: dict[str, float]
    consistency_ratio: float | None
    ahp_criteria: tuple[str, ...] = ()
    ahp_matrix: tuple[tuple[float, ...], ...] = ()
    rationale: str


class RankedProject(FrozenModel):
    project_id: str
    rank: int
    score: float
    #: Per criterion: its weighted contribution, or None where the input was missing.
    breakdown: dict[str, float | None]
    previous_rank: int | None


class Unscorable(FrozenModel):
    project_id: str
    missing: tuple[str, ...]


class RankingDecided(FrozenModel):
    """A ranking and everything it was computed from, so that it can be recomputed."""

    model_id: str
    model_version: int
    method: ScoringMethod
    weights: dict[str, float]
    computed_at_position: int
    candidates: tuple[str, ...]
    ranking: tuple[RankedProject, ...]
    unscorable: tuple[Unscorable, ...] = ()


BucketName = Annotated[str, Field(pattern=r"^(\d{4}|total)/(capex|opex|total)$")]
CellName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+/\d{4}-\d{2}$")]


class Scenario(FrozenModel):
    """A what-if: budgets and capacity, forced choices and hypothetical changes. Scored
    with the current model unless `weights` are given. Never touches the log by itself."""

    name: Name = "baseline"
    model_id: Identifier = "default"
    #: e.g. {"2027/capex": 1500000, "total/total": 4000000}
    budgets: dict[BucketName, Money] = Field(default_factory=dict)
    budget_scale: Annotated[Decimal, Field(gt=0, le=10)] = Decimal(1)
    #: Capacity available to the candidates per role and month, e.g.
    #: {"developer/2027-03": 12.0}; replaces the ledger's figure for that cell.
    capacity: dict[CellName, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    #: Demand per project on those cells, e.g. {"P-1": {"developer/2027-03": 2.5}};
    #: replaces the ledger's demand of that project in that cell (0 removes it).
    demand: dict[Identifier, dict[CellName, Annotated[float, Field(ge=0)]]] = Field(
        default_factory=dict
    )
    cost_multipliers: dict[Identifier, Annotated[Decimal, Field(gt=0, le=100)]] = Field(
        default_factory=dict
    )
    mandatory: tuple[Identifier, ...] = ()
    excluded: tuple[Identifier, ...] = ()
    weights: dict[str, Annotated[Decimal, Field(ge=0, le=1000)]] | None = None
    #: Start from the resource ledger's capacity and demand by role and month (capacity
    #: net of time off and of what running projects hold); `capacity` and `demand` then
    #: replace single cells. False: only the cells typed here.
    ledger: bool = True

    @field_validator("weights")
    @classmethod
    def _weights_known(cls, value: dict[str, Decimal] | None) -> dict[str, Decimal] | None:
        if value is not None:
            _known_criteria(list(value))
        return value

    @model_validator(mode="after")
    def _not_both(self) -> Self:
        both = sorted(set(self.mandatory) & set(self.excluded))
        if both:
            raise ValueError(f"both mandatory and excluded: {', '.join(both)}")
        return self


class NotSelected(FrozenModel):
    project_id: str
    reason: str


class SelectionOutcome(FrozenModel):
    scenario: Scenario
    model_id: str
    model_version: int
    computed_at_position: int
    candidates: tuple[str, ...]
    selected: tuple[str, ...]
    total_value: float
    cost_by_bucket: dict[str, str]
    capacity_use: dict[str, float]
    not_selected: tuple[NotSelected, ...]
    solver_status: str
    #: Capacity available to the candidates per cell, as used: the ledger's (net of time
    #: off and of running projects' demand) with the scenario's cells over it.
    capacity: dict[str, float] = Field(default_factory=dict)
    #: Whether the ledger's capacity and demand were used (outcomes recorded before the
    #: ledger was read say False: they used only the scenario's cells).
    ledger_capacity: bool = False
    #: Relative gap between this selection's value and the solver's proven bound (0 when
    #: optimal); above 0 only when the solver stopped at its time limit.
    mip_gap: float = 0.0
    time_limit_seconds: float | None = None
    #: Set when optimality is not proven: what stopped the solver and the proven gap.
    note: str | None = None


class SelectionDecided(FrozenModel):
    """A scenario committed as the portfolio decision."""

    outcome: SelectionOutcome
    rationale: str


class CommitScenario(FrozenModel):
    """Asked of the prioritization service (`portfolio.control.prioritization.commit`).
    A retry with the same `command_id` (within the log's duplicate window) is stored once."""

    command_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-:]+$", max_length=128)] = Field(
        default_factory=new_id
    )
    scenario: Scenario
    rationale: Rationale
    actor: Name = "anonymous"
    source: Name = "unknown"


class ScenarioQuery(FrozenModel):
    scenarios: tuple[Scenario, ...] = Field(min_length=1, max_length=20)


class ScenarioAnswer(FrozenModel):
    outcomes: tuple[SelectionOutcome, ...]


class FrontierQuery(FrozenModel):
    model_id: Identifier = "default"
    budget_from: Money
    budget_to: Money
    steps: int = Field(default=20, ge=2, le=100)
    #: Within the resource ledger's capacity (net of running projects) and the projects'
    #: demand by role and month; False: budget only.
    ledger: bool = True

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.budget_to <= self.budget_from:
            raise ValueError("budget_to must be above budget_from")
        return self


class FrontierPoint(FrozenModel):
    budget: str
    status: str
    value: float | None
    cost: str | None
    selected: tuple[str, ...]
    problem: str | None = None
    mip_gap: float = 0.0
    #: Set when optimality is not proven at this level (the solver's time limit).
    note: str | None = None


class FrontierAnswer(FrozenModel):
    points: tuple[FrontierPoint, ...]
    #: Capacity available to the candidates per cell (empty without the ledger).
    capacity: dict[str, float] = Field(default_factory=dict)


class RankingRequest(FrozenModel):
    model_id: Identifier = "default"


class RankingAnswer(FrozenModel):
    ranking: RankingDecided
    names: dict[str, str]


class CommitAnswer(FrozenModel):
    appended: AppendedEvent
    outcome: SelectionOutcome


COMMANDS: tuple[type[Command], ...] = (ConfigureScoringModel,)
EVENTS: tuple[type[FrozenModel], ...] = (ScoringModelConfigured, RankingDecided, SelectionDecided)
