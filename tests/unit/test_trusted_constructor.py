"""The constructor intake uses on every command's path gives what `model_construct` gives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, Field

from contracts.base import AppendedEvent, CommandAccepted, EventEnvelope, FrozenModel
from shared.commands import trusted_constructor

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ENVELOPE: dict[str, Any] = {
    "event_id": "e-1",
    "event_type": "ProjectProposed",
    "schema_version": 1,
    "aggregate_type": "project",
    "aggregate_id": "P-1",
    "actor": "alice",
    "source": "tests",
    "occurred_at": NOW,
    "recorded_at": NOW,
    "correlation_id": "c-1",
    "causation_id": "c-1",
    "payload": {"project_id": "P-1", "capex": "1.00"},
}
APPENDED: dict[str, Any] = {
    "event_id": "e-1",
    "event_type": "ProjectProposed",
    "aggregate_type": "project",
    "aggregate_id": "P-1",
    "position": 7,
    "version": 1,
}


@pytest.mark.parametrize(
    ("model", "values"),
    [
        (EventEnvelope, ENVELOPE),
        (EventEnvelope, ENVELOPE | {"command": "ProposeProject"}),
        (AppendedEvent, APPENDED),
        (CommandAccepted, {"command_id": "c-1", "events": (AppendedEvent(**APPENDED),)}),
        (CommandAccepted, {"command_id": "c-1", "events": (), "duplicate": True}),
    ],
)
def test_as_model_construct(model: type[BaseModel], values: dict[str, Any]) -> None:
    construct = trusted_constructor(model)
    assert construct is not model.model_construct  # the fast path, for these models
    fast, slow = construct(**values), model.model_construct(**values)
    assert list(fast.__dict__.items()) == list(slow.__dict__.items())
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    assert fast == slow
    assert fast.model_dump_json() == slow.model_dump_json()


class Aliased(FrozenModel):
    value: int = Field(alias="v")


class Factory(FrozenModel):
    items: list[int] = Field(default_factory=list)


@pytest.mark.parametrize("model", [Aliased, Factory])
def test_other_models_get_model_construct(model: type[BaseModel]) -> None:
    assert trusted_constructor(model) == model.model_construct
