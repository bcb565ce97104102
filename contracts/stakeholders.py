"""Stakeholders: the people whose feedback on a proposal is on the record."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from contracts.base import Command, FrozenModel, Identifier, Name, Title

AGGREGATE = "stakeholder"

Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


class RegisterStakeholder(Command):
    aggregate_type = AGGREGATE
    id_field = "stakeholder_id"
    stakeholder_id: Identifier
    name: Title
    role: Name
    email: Email | None = None


class StakeholderRegistered(FrozenModel):
    stakeholder_id: str
    name: str
    role: str
    email: str | None


COMMANDS: tuple[type[Command], ...] = (RegisterStakeholder,)
EVENTS: tuple[type[FrozenModel], ...] = (StakeholderRegistered,)
