"""The project lifecycle as a pure state machine: decide(command, state, now) -> events.

No I/O and no clock: time comes in as an argument. `evolve` folds events into state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from contracts import projects as p
from contracts.base import Command, ErrorCode, FieldError, FrozenModel

Status = p.ProjectStatus


class Rejected(Exception):
    """A command the domain refuses, with the reason the sender will see."""

    def __init__(self, code: ErrorCode, message: str, details: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class ProjectState:
    project_id: str
    status: Status
    version: int
    planned_start: date
    planned_end: date
    held_from: Status | None = None


#: Which statuses each command may be applied in, and the status it leads to.
TRANSITIONS: dict[type[p.ProjectCommand], frozenset[Status]] = {
    p.SubmitProjectForReview: frozenset({Status.PROPOSED}),
    p.ApproveProject: frozenset({Status.UNDER_REVIEW}),
    p.RejectProject: frozenset({Status.UNDER_REVIEW}),
    p.StartProject: frozenset({Status.APPROVED}),
    p.PutProjectOnHold: frozenset({Status.APPROVED, Status.IN_PROGRESS}),
    p.ResumeProject: frozenset({Status.ON_HOLD}),
    p.CompleteProject: frozenset({Status.IN_PROGRESS}),
    p.UpdateProjectEstimate: frozenset(set(Status) - p.TERMINAL_STATUSES),
    p.CancelProject: frozenset(set(Status) - p.TERMINAL_STATUSES),
}


def evolve(state: ProjectState | None, event: FrozenModel) -> ProjectState:
    if isinstance(event, p.ProjectProposed):
        return ProjectState(
            project_id=event.project_id,
            status=Status.PROPOSED,
            version=1,
            planned_start=event.planned_start,
            planned_end=event.planned_end,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before ProjectProposed")
    status = p.status_after(event, state.status) or state.status
    state = replace(state, status=status, version=state.version + 1)
    if isinstance(event, p.ProjectEstimateUpdated):
        state = replace(state, planned_start=event.planned_start, planned_end=event.planned_end)
    if isinstance(event, p.ProjectPutOnHold):
        state = replace(state, held_from=event.held_from)
    return state


def decide(command: Command, state: ProjectState | None, now: datetime) -> list[FrozenModel]:
    """The events a command produces, or `Rejected`."""
    if not isinstance(command, p.ProjectCommand):
        raise Rejected(
            ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not a project command"
        )
    if isinstance(command, p.ProposeProject):
        if state is not None:
            raise Rejected(
                ErrorCode.ALREADY_EXISTS,
                f"project {command.project_id} already exists ({state.status})",
                (FieldError(field="project_id", message="already exists", input=state.project_id),),
            )
        return [
            p.ProjectProposed(
                **command.model_dump(
                    include={
                        "project_id",
                        "name",
                        "description",
                        "sponsor",
                        "category",
                        "capex",
                        "opex",
                        "currency",
                        "planned_start",
                        "planned_end",
                        "mandatory",
                        "dependencies",
                    }
                )
            )
        ]
    project_id: str = command.project_id
    if state is None:
        raise Rejected(
            ErrorCode.NOT_FOUND,
            f"project {project_id} does not exist",
            (FieldError(field="project_id", message="unknown project", input=project_id),),
        )
    allowed = TRANSITIONS.get(type(command))
    if allowed is None:
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")
    if state.status not in allowed:
        raise Rejected(
            ErrorCode.ILLEGAL_TRANSITION,
            f"cannot {type(command).__name__} project {project_id} while it is {state.status}; "
            f"allowed when {', '.join(sorted(allowed))}",
        )
    return [_event_for(command, state, now)]


def _event_for(command: p.ProjectCommand, state: ProjectState, now: datetime) -> FrozenModel:
    pid = state.project_id
    match command:
        case p.UpdateProjectEstimate():
            planned_start = command.planned_start or state.planned_start
            planned_end = command.planned_end or state.planned_end
            if planned_end < planned_start:
                raise Rejected(
                    ErrorCode.VALIDATION_FAILED,
                    "planned_end must not be before planned_start",
                    (FieldError(field="planned_end", message="before planned_start"),),
                )
            return p.ProjectEstimateUpdated(
                project_id=pid,
                capex=command.capex,
                opex=command.opex,
                planned_start=planned_start,
                planned_end=planned_end,
                reason=command.reason,
            )
        case p.SubmitProjectForReview():
            return p.ProjectSubmittedForReview(project_id=pid)
        case p.ApproveProject():
            return p.ProjectApproved(project_id=pid, rationale=command.rationale)
        case p.RejectProject():
            return p.ProjectRejected(project_id=pid, rationale=command.rationale)
        case p.StartProject():
            return p.ProjectStarted(project_id=pid, started_on=command.started_on or now.date())
        case p.PutProjectOnHold():
            return p.ProjectPutOnHold(project_id=pid, reason=command.reason, held_from=state.status)
        case p.ResumeProject():
            return p.ProjectResumed(project_id=pid, resumed_to=state.held_from or Status.APPROVED)
        case p.CompleteProject():
            return p.ProjectCompleted(
                project_id=pid, completed_on=command.completed_on or now.date()
            )
        case p.CancelProject():
            return p.ProjectCancelled(
                project_id=pid, reason=command.reason, cancelled_from=state.status
            )
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")
