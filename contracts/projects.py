"""Project lifecycle: commands (imperative) and events (past tense)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from contracts.base import (
    AggregateKey,
    Command,
    FrozenModel,
    Identifier,
    Money,
    Name,
    Rationale,
    Text,
    Title,
)
from contracts.objectives import AGGREGATE as OBJECTIVE
from contracts.stakeholders import AGGREGATE as STAKEHOLDER

AGGREGATE = "project"

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Year = Annotated[int, Field(ge=2000, le=2100)]
#: The relative scale WSJF uses for its inputs.
FIBONACCI = (1, 2, 3, 5, 8, 13, 20)


class ProjectStatus(StrEnum):
    PROPOSED = "proposed"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset(
    {ProjectStatus.REJECTED, ProjectStatus.COMPLETED, ProjectStatus.CANCELLED}
)


# --- commands -------------------------------------------------------------------------


def _end_not_before_start(cls: type, value: date | None, info: ValidationInfo) -> date | None:
    """Reported on planned_end, so the sender sees which field to fix."""
    start = info.data.get("planned_start")
    if value is not None and start is not None and value < start:
        raise ValueError(f"planned_end {value} is before planned_start {start}")
    return value


class ProjectCommand(Command):
    """A command addressed to one project."""

    aggregate_type = AGGREGATE
    id_field = "project_id"
    project_id: Identifier


class ObjectiveContribution(FrozenModel):
    """How strongly a project serves a strategic objective (1 weak .. 5 decisive)."""

    objective_id: Identifier
    contribution: int = Field(ge=1, le=5, strict=True)


class YearlyCost(FrozenModel):
    year: Year
    capex: Money = Decimal(0)
    opex: Money = Decimal(0)


class YearlyBenefit(FrozenModel):
    year: Year
    amount: Money
    description: Annotated[str, StringConstraints(max_length=500)] = ""


def _fibonacci(value: int | None) -> int | None:
    if value is not None and value not in FIBONACCI:
        raise ValueError(f"must be one of {', '.join(map(str, FIBONACCI))}")
    return value


Fibonacci = Annotated[int | None, Field(default=None, strict=True)]


class ScoringInputs(FrozenModel):
    """What the prioritization models score on; all optional, all relative scales."""

    business_value: Fibonacci = None
    time_criticality: Fibonacci = None
    risk_reduction: Fibonacci = None
    job_size: Fibonacci = None
    npv: (
        Annotated[Decimal, Field(ge=Decimal("-1e12"), le=Decimal("1e12"), decimal_places=2)] | None
    ) = None
    risk: int | None = Field(default=None, ge=1, le=5, strict=True)
    urgency: int | None = Field(default=None, ge=1, le=5, strict=True)

    @field_validator("business_value", "time_criticality", "risk_reduction", "job_size")
    @classmethod
    def _on_the_scale(cls, value: int | None) -> int | None:
        return _fibonacci(value)


def _unique(items: tuple[FrozenModel, ...], key: str, what: str) -> None:
    seen = [getattr(item, key) for item in items]
    duplicates = sorted({str(v) for v in seen if seen.count(v) > 1})
    if duplicates:
        raise ValueError(f"{what} listed more than once: {', '.join(duplicates)}")


class ProposeProject(ProjectCommand):
    """A proposal with its business case. Yearly costs, when given, must add up to
    capex and opex (which default to their sums)."""

    name: Title
    description: Text = ""
    sponsor: Name
    category: Name = "general"
    programme: Identifier | None = Field(
        default=None, description="The programme the project belongs to, for roll-ups."
    )
    capex: Money | None = None
    opex: Money | None = None
    currency: Currency = "EUR"
    planned_start: date
    planned_end: date
    mandatory: bool = False
    dependencies: tuple[Identifier, ...] = Field(default=(), max_length=100)
    objectives: tuple[ObjectiveContribution, ...] = Field(default=(), max_length=20)
    costs: tuple[YearlyCost, ...] = Field(default=(), max_length=30)
    expected_benefits: tuple[YearlyBenefit, ...] = Field(default=(), max_length=30)
    scoring: ScoringInputs = ScoringInputs()

    _end_not_before_start = field_validator("planned_end")(_end_not_before_start)

    @field_validator("dependencies")
    @classmethod
    def _not_self(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.data.get("project_id") in value:
            raise ValueError("a project cannot depend on itself")
        if len(set(value)) != len(value):
            raise ValueError("a dependency is listed more than once")
        return value

    @field_validator("objectives")
    @classmethod
    def _objectives_once(
        cls, value: tuple[ObjectiveContribution, ...]
    ) -> tuple[ObjectiveContribution, ...]:
        _unique(value, "objective_id", "objective")
        return value

    @field_validator("costs")
    @classmethod
    def _years_once(cls, value: tuple[YearlyCost, ...]) -> tuple[YearlyCost, ...]:
        _unique(value, "year", "year")
        return value

    @model_validator(mode="after")
    def _totals_match_years(self) -> Self:
        for kind in ("capex", "opex"):
            total = getattr(self, kind)
            by_year = sum((getattr(c, kind) for c in self.costs), Decimal(0))
            if self.costs and total is not None and total != by_year:
                raise PydanticCustomError(
                    "totals_mismatch",
                    f"{kind} {total} differs from the sum of the yearly costs {by_year}",
                )
        return self

    def total(self, kind: str) -> Decimal:
        given: Decimal | None = getattr(self, kind)
        if given is not None:
            return given
        return sum((getattr(c, kind) for c in self.costs), Decimal(0))

    def references(self) -> tuple[AggregateKey, ...]:
        return tuple((OBJECTIVE, o.objective_id) for o in self.objectives) + tuple(
            (AGGREGATE, d) for d in self.dependencies
        )


class UpdateProjectEstimate(ProjectCommand):
    capex: Money
    opex: Money
    planned_start: date | None = None
    planned_end: date | None = None
    reason: Rationale

    _end_not_before_start = field_validator("planned_end")(_end_not_before_start)


class SubmitProjectForReview(ProjectCommand):
    """Ask for a decision on the proposal."""


class ApproveProject(ProjectCommand):
    rationale: Rationale


class RejectProject(ProjectCommand):
    rationale: Rationale


class StartProject(ProjectCommand):
    started_on: date | None = None


class PutProjectOnHold(ProjectCommand):
    reason: Rationale


class ResumeProject(ProjectCommand):
    """Return a held project to the status it was held from."""


class CompleteProject(ProjectCommand):
    completed_on: date | None = None


class CancelProject(ProjectCommand):
    reason: Rationale


class CommentOnProposal(ProjectCommand):
    stakeholder_id: Identifier
    comment: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]

    def references(self) -> tuple[AggregateKey, ...]:
        return ((STAKEHOLDER, self.stakeholder_id),)


#: A reference in another tool (a finance measurement, a benefits tracker entry).
ExternalRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class RecordRealisedBenefit(ProjectCommand):
    """A benefit a completed project actually delivered in `year` (in the project's
    currency), to set against its business case. One figure per year: another for a year
    already recorded is refused unless it says `replace` (the first stays in the log); an
    `external_ref` already recorded for the project is refused as a duplicate."""

    year: Year
    amount: Money
    external_ref: ExternalRef | None = None
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""
    replace: bool = False


class RecordLessonLearned(ProjectCommand):
    """What a closed (completed or cancelled) project would do again or differently, kept
    for the projects that follow. `lesson_id` defaults to L1, L2, ... within the project."""

    lesson_id: Identifier | None = None
    title: Title
    description: LongText
    recommendation: Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)] = ""
    category: Name = Field(default="general", description="e.g. estimation, vendor, people.")


class StakeholderStance(StrEnum):
    SUPPORT = "support"
    OPPOSE = "oppose"


class RecordStakeholderStance(ProjectCommand):
    """A stakeholder supports or opposes a proposal, and says why."""

    stakeholder_id: Identifier
    stance: StakeholderStance
    reason: Rationale

    def references(self) -> tuple[AggregateKey, ...]:
        return ((STAKEHOLDER, self.stakeholder_id),)


# --- events ---------------------------------------------------------------------------


class ProjectProposed(FrozenModel):
    project_id: str
    name: str
    description: str
    sponsor: str
    category: str
    capex: Decimal
    opex: Decimal
    currency: str
    planned_start: date
    planned_end: date
    mandatory: bool
    dependencies: tuple[str, ...]
    programme: str | None = None
    objectives: tuple[ObjectiveContribution, ...] = ()
    costs: tuple[YearlyCost, ...] = ()
    expected_benefits: tuple[YearlyBenefit, ...] = ()
    scoring: ScoringInputs = ScoringInputs()


class ProjectEstimateUpdated(FrozenModel):
    project_id: str
    capex: Decimal
    opex: Decimal
    planned_start: date
    planned_end: date
    reason: str


class ProjectSubmittedForReview(FrozenModel):
    project_id: str


class ProjectApproved(FrozenModel):
    project_id: str
    rationale: str


class ProjectRejected(FrozenModel):
    project_id: str
    rationale: str


class ProjectStarted(FrozenModel):
    project_id: str
    started_on: date


class ProjectPutOnHold(FrozenModel):
    project_id: str
    reason: str
    held_from: ProjectStatus


class ProjectResumed(FrozenModel):
    project_id: str
    resumed_to: ProjectStatus


class ProjectCompleted(FrozenModel):
    project_id: str
    completed_on: date


class ProjectCancelled(FrozenModel):
    project_id: str
    reason: str
    cancelled_from: ProjectStatus


class ProposalCommented(FrozenModel):
    project_id: str
    stakeholder_id: str
    comment: str


class StakeholderStanceRecorded(FrozenModel):
    project_id: str
    stakeholder_id: str
    stance: StakeholderStance
    reason: str


class RealisedBenefitRecorded(FrozenModel):
    project_id: str
    year: int
    amount: Decimal
    external_ref: str | None = None
    description: str = ""
    #: The amount this record supersedes for the same year (None: the year's first record).
    replaced_amount: Decimal | None = None


class LessonLearnedRecorded(FrozenModel):
    project_id: str
    lesson_id: str
    title: str
    description: str
    recommendation: str = ""
    category: str = "general"


def status_after(event: FrozenModel, current: ProjectStatus | None) -> ProjectStatus | None:
    """What a lifecycle event means for the project's status (shared by every projection)."""
    match event:
        case ProjectProposed():
            return ProjectStatus.PROPOSED
        case ProjectSubmittedForReview():
            return ProjectStatus.UNDER_REVIEW
        case ProjectApproved():
            return ProjectStatus.APPROVED
        case ProjectRejected():
            return ProjectStatus.REJECTED
        case ProjectStarted():
            return ProjectStatus.IN_PROGRESS
        case ProjectPutOnHold():
            return ProjectStatus.ON_HOLD
        case ProjectResumed(resumed_to=resumed_to):
            return resumed_to
        case ProjectCompleted():
            return ProjectStatus.COMPLETED
        case ProjectCancelled():
            return ProjectStatus.CANCELLED
    return current


COMMANDS: tuple[type[Command], ...] = (
    ProposeProject,
    UpdateProjectEstimate,
    SubmitProjectForReview,
    ApproveProject,
    RejectProject,
    StartProject,
    PutProjectOnHold,
    ResumeProject,
    CompleteProject,
    CancelProject,
    CommentOnProposal,
    RecordStakeholderStance,
    RecordRealisedBenefit,
    RecordLessonLearned,
)

EVENTS: tuple[type[FrozenModel], ...] = (
    ProjectProposed,
    ProjectEstimateUpdated,
    ProjectSubmittedForReview,
    ProjectApproved,
    ProjectRejected,
    ProjectStarted,
    ProjectPutOnHold,
    ProjectResumed,
    ProjectCompleted,
    ProjectCancelled,
    ProposalCommented,
    StakeholderStanceRecorded,
    RealisedBenefitRecorded,
    LessonLearnedRecorded,
)
