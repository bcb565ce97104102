"""A project's lifecycle as a pure state machine, the one project state every other
aggregate refers to (`ProjectRef`): ledger and risk decisions see a project through it,
and the one fold of its business case (`ProjectProfile`) that prioritization ranks and
reporting reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from itertools import count
from typing import Protocol

from contracts import objectives as o
from contracts import projects as p
from contracts import stakeholders as sh
from contracts.base import Command, ErrorCode, FieldError, FrozenModel
from domain.kernel import Refs, Rejected, require

Status = p.ProjectStatus


@dataclass(frozen=True)
class ProjectState:
    project_id: str
    status: Status
    version: int
    planned_start: date
    planned_end: date
    held_from: Status | None = None
    started_on: date | None = None
    #: What closure records already hold: realised benefit per year, references, lessons.
    realised: tuple[tuple[int, Decimal], ...] = ()
    benefit_refs: frozenset[str] = frozenset()
    lessons: frozenset[str] = frozenset()


class ProjectRef(Protocol):
    """What another aggregate's decision may know of a project (`ProjectState` is one)."""

    @property
    def project_id(self) -> str: ...

    @property
    def status(self) -> Status: ...

    @property
    def planned_end(self) -> date: ...


def project_ref(refs: Refs, project_id: str) -> ProjectRef | None:
    """The project a command names, as loaded by the handler, or None when unknown."""
    found: ProjectRef | None = refs.get((p.AGGREGATE, project_id))
    return found


@dataclass(frozen=True)
class ProjectProfile:
    """A project's business case and status as the log states it now: what prioritization
    ranks and reporting reports, folded once (`profile_from`, `evolve_profile`)."""

    project_id: str
    name: str
    sponsor: str
    category: str
    status: Status
    capex: Decimal
    opex: Decimal
    currency: str
    planned_start: date
    planned_end: date
    mandatory: bool
    dependencies: tuple[str, ...]
    #: Contribution (points) per objective served.
    objectives: Mapping[str, int]
    costs: tuple[p.YearlyCost, ...]
    benefits: tuple[p.YearlyBenefit, ...]
    scoring: p.ScoringInputs

    @property
    def cost(self) -> Decimal:
        return self.capex + self.opex

    @property
    def benefits_total(self) -> Decimal:
        return sum((b.amount for b in self.benefits), Decimal(0))


def profile_from(event: p.ProjectProposed) -> ProjectProfile:
    return ProjectProfile(
        project_id=event.project_id,
        name=event.name,
        sponsor=event.sponsor,
        category=event.category,
        status=Status.PROPOSED,
        capex=event.capex,
        opex=event.opex,
        currency=event.currency,
        planned_start=event.planned_start,
        planned_end=event.planned_end,
        mandatory=event.mandatory,
        dependencies=event.dependencies,
        objectives={c.objective_id: c.contribution for c in event.objectives},
        costs=event.costs,
        benefits=event.expected_benefits,
        scoring=event.scoring,
    )


def evolve_profile(profile: ProjectProfile, event: FrozenModel) -> ProjectProfile:
    """The profile after one later event of the project (the same profile when the event
    changes nothing in it)."""
    if isinstance(event, p.ProjectEstimateUpdated):
        # The yearly split no longer adds up to the new totals: it is dropped.
        return replace(
            profile,
            capex=event.capex,
            opex=event.opex,
            costs=(),
            planned_start=event.planned_start,
            planned_end=event.planned_end,
        )
    status = p.status_after(event, profile.status) or profile.status
    return profile if status == profile.status else replace(profile, status=status)


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
    p.CommentOnProposal: frozenset({Status.PROPOSED, Status.UNDER_REVIEW}),
    p.RecordStakeholderStance: frozenset({Status.PROPOSED, Status.UNDER_REVIEW}),
}

#: Closure records: not transitions, allowed once the project is closed this way.
CLOSURE: dict[type[p.ProjectCommand], frozenset[Status]] = {
    p.RecordRealisedBenefit: frozenset({Status.COMPLETED}),
    p.RecordLessonLearned: frozenset({Status.COMPLETED, Status.CANCELLED}),
}


def evolve_project(state: ProjectState | None, event: FrozenModel) -> ProjectState:
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
    match event:
        case p.ProjectPutOnHold():
            state = replace(state, held_from=event.held_from)
        case p.ProjectStarted():
            state = replace(state, started_on=event.started_on)
        case p.RealisedBenefitRecorded():
            refs = {event.external_ref} if event.external_ref else set()
            others = [(y, a) for y, a in state.realised if y != event.year]
            state = replace(
                state,
                realised=tuple(sorted([*others, (event.year, event.amount)])),
                benefit_refs=state.benefit_refs | refs,
            )
        case p.LessonLearnedRecorded():
            state = replace(state, lessons=state.lessons | {event.lesson_id})
    return state


def decide_project(
    command: Command, state: ProjectState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
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
        _check_proposal_references(command, refs)
        fields = command.model_dump(exclude=set(p.ProjectCommand.model_fields) - {"project_id"})
        fields |= {"capex": command.total("capex"), "opex": command.total("opex")}
        return [p.ProjectProposed(**fields)]
    project_id: str = command.project_id
    if state is None:
        raise Rejected(
            ErrorCode.NOT_FOUND,
            f"project {project_id} does not exist",
            (FieldError(field="project_id", message="unknown project", input=project_id),),
        )
    allowed = TRANSITIONS.get(type(command)) or CLOSURE.get(type(command))
    if allowed is None:
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")
    if state.status not in allowed:
        raise Rejected(
            ErrorCode.ILLEGAL_TRANSITION,
            f"cannot {type(command).__name__} project {project_id} while it is {state.status}; "
            f"allowed when {', '.join(sorted(allowed))}",
        )
    if isinstance(command, p.CommentOnProposal | p.RecordStakeholderStance):
        require(refs, (sh.AGGREGATE, command.stakeholder_id), "stakeholder_id")
    if isinstance(command, p.RecordRealisedBenefit):
        return [_realised_benefit(command, state)]
    if isinstance(command, p.RecordLessonLearned):
        return [_lesson(command, state)]
    return [_event_for(command, state, now)]


def _realised_benefit(command: p.RecordRealisedBenefit, state: ProjectState) -> FrozenModel:
    """One figure per year (replaced only when asked), each external reference once, and
    no year before the project started."""
    pid, year = state.project_id, command.year
    first_year = (state.started_on or state.planned_start).year
    if year < first_year:
        raise Rejected(
            ErrorCode.VALIDATION_FAILED,
            f"project {pid} started in {first_year}: no benefit can be realised in {year}",
            (FieldError(field="year", message=f"before {first_year}", input=year),),
        )
    ref = command.external_ref
    if ref is not None and ref in state.benefit_refs:
        raise Rejected(
            ErrorCode.ALREADY_EXISTS,
            f"a realised benefit with external_ref {ref} is already recorded for {pid}",
            (FieldError(field="external_ref", message="already recorded", input=ref),),
        )
    recorded = dict(state.realised).get(year)
    if recorded is not None and not command.replace:
        raise Rejected(
            ErrorCode.ALREADY_EXISTS,
            f"the realised benefit of {pid} for {year} is already recorded: "
            "send replace: true to supersede it",
            (FieldError(field="year", message="already recorded", input=year),),
        )
    if command.replace and recorded is None:
        raise Rejected(
            ErrorCode.NOT_FOUND,
            f"nothing to replace: no realised benefit of {pid} is recorded for {year}",
            (FieldError(field="replace", message="no record for the year", input=year),),
        )
    return p.RealisedBenefitRecorded(
        project_id=pid,
        year=year,
        amount=command.amount,
        external_ref=ref,
        description=command.description,
        replaced_amount=recorded,
    )


def _lesson(command: p.RecordLessonLearned, state: ProjectState) -> FrozenModel:
    lesson_id = command.lesson_id or next(
        f"L{n}" for n in count(len(state.lessons) + 1) if f"L{n}" not in state.lessons
    )
    if lesson_id in state.lessons:
        raise Rejected(
            ErrorCode.ALREADY_EXISTS,
            f"lesson {lesson_id} of project {state.project_id} is already recorded",
            (FieldError(field="lesson_id", message="already recorded", input=lesson_id),),
        )
    return p.LessonLearnedRecorded(
        project_id=state.project_id,
        lesson_id=lesson_id,
        title=command.title,
        description=command.description,
        recommendation=command.recommendation,
        category=command.category,
    )


def _check_proposal_references(command: p.ProposeProject, refs: Refs) -> None:
    for index, served in enumerate(command.objectives):
        field = f"objectives.{index}.objective_id"
        objective = require(refs, (o.AGGREGATE, served.objective_id), field)
        if objective.retired:
            raise Rejected(
                ErrorCode.VALIDATION_FAILED,
                f"objective {served.objective_id} is retired",
                (FieldError(field=field, message="retired objective", input=served.objective_id),),
            )
    for index, dependency in enumerate(command.dependencies):
        field = f"dependencies.{index}"
        project = require(refs, (p.AGGREGATE, dependency), field)
        if project.status in (Status.REJECTED, Status.CANCELLED):
            raise Rejected(
                ErrorCode.VALIDATION_FAILED,
                f"dependency {dependency} is {project.status}",
                (
                    FieldError(
                        field=field, message=f"project is {project.status}", input=dependency
                    ),
                ),
            )


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
        case p.CommentOnProposal():
            return p.ProposalCommented(
                project_id=pid, stakeholder_id=command.stakeholder_id, comment=command.comment
            )
        case p.RecordStakeholderStance():
            return p.StakeholderStanceRecorded(
                project_id=pid,
                stakeholder_id=command.stakeholder_id,
                stance=command.stance,
                reason=command.reason,
            )
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")


#: Projects that will never run: no risks, baselines or progress against them.
NEVER_RUN = frozenset({Status.REJECTED, Status.CANCELLED})


def live_project(refs: Refs, project_id: str, field_name: str) -> ProjectRef:
    """The named project, refused when unknown or when it will never run."""
    project: ProjectRef = require(refs, (p.AGGREGATE, project_id), field_name)
    if project.status in NEVER_RUN:
        raise Rejected(
            ErrorCode.VALIDATION_FAILED,
            f"project {project_id} is {project.status}",
            (
                FieldError(
                    field=field_name, message=f"project is {project.status}", input=project_id
                ),
            ),
        )
    return project
