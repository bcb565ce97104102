"""Strategic objectives and stakeholders: what proposals serve and who speaks to them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from contracts import objectives as o
from contracts import stakeholders as sh
from contracts.base import Command, ErrorCode, FieldError, FrozenModel
from domain.kernel import Refs, Rejected

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
class StakeholderState:
    stakeholder_id: str
    name: str


def evolve_stakeholder(state: StakeholderState | None, event: FrozenModel) -> StakeholderState:
    if isinstance(event, sh.StakeholderRegistered):
        return StakeholderState(stakeholder_id=event.stakeholder_id, name=event.name)
    if state is None:
        raise ValueError(f"{type(event).__name__} before StakeholderRegistered")
    return state


def decide_stakeholder(
    command: Command, state: StakeholderState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    if not isinstance(command, sh.RegisterStakeholder):
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")
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
