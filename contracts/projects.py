"""Project lifecycle: commands (imperative) and events (past tense)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from contracts.base import Command, FrozenModel, Identifier, Name, Rationale

AGGREGATE = "project"

Money = Annotated[Decimal, Field(ge=0, le=Decimal("1e12"), max_digits=16, decimal_places=2)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=5000)]


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

    project_id: Identifier


class ProposeProject(ProjectCommand):
    name: Title
    description: Text = ""
    sponsor: Name
    category: Name = "general"
    capex: Money = Decimal(0)
    opex: Money = Decimal(0)
    currency: Currency = "EUR"
    planned_start: date
    planned_end: date
    mandatory: bool = False
    dependencies: tuple[Identifier, ...] = Field(default=(), max_length=100)

    _end_not_before_start = field_validator("planned_end")(_end_not_before_start)

    @field_validator("dependencies")
    @classmethod
    def _not_self(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.data.get("project_id") in value:
            raise ValueError("a project cannot depend on itself")
        return value


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
)
