"""Strategic objectives: what the portfolio is for, and how much each one weighs."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field

from contracts.base import Command, FrozenModel, Identifier, Name, Rationale, Text, Title

AGGREGATE = "objective"

Weight = Annotated[Decimal, Field(gt=0, le=100, max_digits=6, decimal_places=3)]


class ObjectiveCommand(Command):
    aggregate_type = AGGREGATE
    id_field = "objective_id"
    objective_id: Identifier


class DefineObjective(ObjectiveCommand):
    name: Title
    description: Text = ""
    owner: Name
    weight: Weight


class ReweightObjective(ObjectiveCommand):
    weight: Weight
    rationale: Rationale


class RetireObjective(ObjectiveCommand):
    rationale: Rationale


class ObjectiveDefined(FrozenModel):
    objective_id: str
    name: str
    description: str
    owner: str
    weight: Decimal


class ObjectiveReweighted(FrozenModel):
    objective_id: str
    weight: Decimal
    previous_weight: Decimal
    rationale: str


class ObjectiveRetired(FrozenModel):
    objective_id: str
    rationale: str


COMMANDS: tuple[type[Command], ...] = (DefineObjective, ReweightObjective, RetireObjective)
EVENTS: tuple[type[FrozenModel], ...] = (ObjectiveDefined, ObjectiveReweighted, ObjectiveRetired)
