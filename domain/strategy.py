"""Strategic objectives and stakeholders: what proposals serve and who speaks to them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from contracts import objectives as o
from contracts import stakeholders as sh
from contracts.base import Command, ErrorCode, FieldError, FrozenModel
from domain.kernel import Refs, Rejected, refuse, require

# --- strategic objectives ---------------------------------------------------------------


@dataclass(frozen=True)
class ObjectiveState:
    objective_id: str
    weight: Any
    retired: bool = False


def evolve_objective(state: ObjectiveState | None, event: FrozenModel) -> ObjectiveState:
    match event:
        case o.ObjectiveDefined():
            return ObjectiveState(objective_id=event.objective_id, weight=event.weight)
    if state is None:
        raise ValueError(f"{type(event).__name__} before ObjectiveDefined")
    match event:
        case o.ObjectiveReweighted():
            return replace(state, weight=event.weight)
        case o.ObjectiveRetired():
            return replace(state, retired=True)
    return state


def decide_objective(
    command: Command, state: ObjectiveState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    if isinstance(command, o.DefineObjective):
        if state is not None:
            raise Rejected(
                ErrorCode.ALREADY_EXISTS,
                f"objective {command.objective_id} already exists",
                (FieldError(field="objective_id", message="already exists"),),
            )
        return [
            o.ObjectiveDefined(
                objective_id=command.objective_id,
                name=command.name,
                description=command.description,
                owner=command.owner,
                weight=command.weight,
            )
        ]
    if not isinstance(command, o.ObjectiveCommand):
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")
    if state is None:
        raise Rejected(
            ErrorCode.NOT_FOUND,
            f"objective {command.objective_id} does not exist",
            (FieldError(field="objective_id", message="unknown objective"),),
        )
    if state.retired:
        raise Rejected(ErrorCode.ILLEGAL_TRANSITION, f"objective {command.objective_id} is retired")
    match command:
        case o.ReweightObjective():
            return [
                o.ObjectiveReweighted(
                    objective_id=command.objective_id,
                    weight=command.weight,
                    previous_weight=state.weight,
                    rationale=command.rationale,
                )
            ]
        case o.RetireObjective():
            return [
                o.ObjectiveRetired(objective_id=command.objective_id, rationale=command.rationale)
            ]
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")


# --- stakeholders -----------------------------------------------------------------------


@dataclass(frozen=True)
class Feedback:
    feedback_id: str
    concerns: sh.Interest
    decision_event_id: str | None
    text: str
    response: str | None = None

    @property
    def is_open(self) -> bool:
        return self.response is None


@dataclass(frozen=True)
class StakeholderState:
    stakeholder_id: str
    name: str
    role: str = ""
    email: str | None = None
    influence: int | None = None
    interest: int | None = None
    current_engagement: sh.Engagement | None = None
    desired_engagement: sh.Engagement | None = None
    cares_about: tuple[sh.Interest, ...] = ()
    feedback: Mapping[str, Feedback] = field(default_factory=dict)
    plans: Mapping[str, sh.CommunicationPlanned] = field(default_factory=dict)

    @property
    def open_feedback(self) -> int:
        return sum(1 for f in self.feedback.values() if f.is_open)

    @property
    def engagement_gap(self) -> int | None:
        """Levels between desired and current engagement (positive: more is needed)."""
        if self.current_engagement is None or self.desired_engagement is None:
            return None
        return self.desired_engagement.rank - self.current_engagement.rank

    @property
    def quadrant(self) -> str | None:
        """The power/interest grid's quadrant (high is 4 or 5 on the 1-5 scale)."""
        if self.influence is None or self.interest is None:
            return None
        high_power, high_interest = self.influence >= 4, self.interest >= 4
        if high_power:
            return "manage closely" if high_interest else "keep satisfied"
        return "keep informed" if high_interest else "monitor"


def evolve_stakeholder(state: StakeholderState | None, event: FrozenModel) -> StakeholderState:
    if isinstance(event, sh.StakeholderRegistered):
        return StakeholderState(
            stakeholder_id=event.stakeholder_id, name=event.name, role=event.role, email=event.email
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before StakeholderRegistered")
    match event:
        case sh.StakeholderAssessed():
            return replace(
                state,
                influence=event.influence,
                interest=event.interest,
                current_engagement=event.current_engagement,
                desired_engagement=event.desired_engagement,
                cares_about=event.cares_about,
            )
        case sh.FeedbackGiven():
            given = Feedback(event.feedback_id, event.concerns, event.decision_event_id, event.text)
            return replace(state, feedback={**state.feedback, event.feedback_id: given})
        case sh.FeedbackResponded():
            answered = replace(state.feedback[event.feedback_id], response=event.response)
            return replace(state, feedback={**state.feedback, event.feedback_id: answered})
        case sh.CommunicationPlanned():
            return replace(state, plans={**state.plans, event.plan_id: event})
        case sh.CommunicationStopped():
            return replace(
                state, plans={k: v for k, v in state.plans.items() if k != event.plan_id}
            )
    return state


def decide_stakeholder(
    command: Command, state: StakeholderState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    if isinstance(command, sh.RegisterStakeholder):
        if state is not None:
            raise Rejected(
                ErrorCode.ALREADY_EXISTS,
                f"stakeholder {command.stakeholder_id} already exists",
                (FieldError(field="stakeholder_id", message="already exists"),),
            )
        return [
            sh.StakeholderRegistered(
                stakeholder_id=command.stakeholder_id,
                name=command.name,
                role=command.role,
                email=command.email,
            )
        ]
    if not isinstance(command, sh.StakeholderCommand):
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")
    if state is None:
        raise refuse(
            ErrorCode.NOT_FOUND,
            f"unknown stakeholder {command.stakeholder_id}",
            "stakeholder_id",
            command.stakeholder_id,
        )
    sid = state.stakeholder_id
    match command:
        case sh.AssessStakeholder():
            for index, interest in enumerate(command.cares_about):
                if (key := interest.aggregate()) is not None:
                    require(refs, key, f"cares_about.{index}.id")
            return [
                sh.StakeholderAssessed(
                    stakeholder_id=sid,
                    influence=command.influence,
                    interest=command.interest,
                    current_engagement=command.current_engagement,
                    desired_engagement=command.desired_engagement,
                    cares_about=command.cares_about,
                )
            ]
        case sh.GiveFeedback():
            if command.feedback_id in state.feedback:
                raise refuse(
                    ErrorCode.ALREADY_EXISTS,
                    f"feedback {command.feedback_id} already exists",
                    "feedback_id",
                    command.feedback_id,
                )
            if (key := command.concerns.aggregate()) is not None:
                require(refs, key, "concerns.id")
            return [
                sh.FeedbackGiven(
                    stakeholder_id=sid,
                    feedback_id=command.feedback_id,
                    concerns=command.concerns,
                    decision_event_id=command.decision_event_id,
                    text=command.text,
                )
            ]
        case sh.RespondToFeedback():
            feedback = state.feedback.get(command.feedback_id)
            if feedback is None:
                raise refuse(
                    ErrorCode.NOT_FOUND,
                    f"stakeholder {sid} gave no feedback {command.feedback_id}",
                    "feedback_id",
                    command.feedback_id,
                )
            if not feedback.is_open:
                raise refuse(
                    ErrorCode.ILLEGAL_TRANSITION,
                    f"feedback {command.feedback_id} was already answered",
                    "feedback_id",
                    command.feedback_id,
                )
            return [
                sh.FeedbackResponded(
                    stakeholder_id=sid, feedback_id=command.feedback_id, response=command.response
                )
            ]
        case sh.PlanCommunication():
            return [
                sh.CommunicationPlanned(
                    stakeholder_id=sid,
                    plan_id=command.plan_id,
                    content=command.content,
                    frequency=command.frequency,
                    channel=command.channel,
                    target=command.target,
                )
            ]
        case sh.StopCommunication():
            if command.plan_id not in state.plans:
                raise refuse(
                    ErrorCode.NOT_FOUND,
                    f"stakeholder {sid} has no communication plan {command.plan_id}",
                    "plan_id",
                    command.plan_id,
                )
            return [sh.CommunicationStopped(stakeholder_id=sid, plan_id=command.plan_id)]
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")
