"""Lookup of every command and event type by name, and upcasting of old event versions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts import (
    ledger,
    notify,
    objectives,
    prioritization,
    projects,
    reports,
    risks,
    stakeholders,
)
from contracts.base import Command, EventEnvelope, FrozenModel

#: Every contract module, each contributing its COMMANDS and EVENTS.
MODULES = (objectives, stakeholders, projects, prioritization, ledger, risks, reports, notify)

COMMANDS: dict[str, type[Command]] = {c.__name__: c for m in MODULES for c in m.COMMANDS}

EVENTS: dict[str, type[FrozenModel]] = {e.__name__: e for m in MODULES for e in m.EVENTS}

#: Which aggregate each command addresses, and the field holding the aggregate id.
COMMAND_AGGREGATE: dict[str, tuple[str, str]] = {
    name: (c.aggregate_type, c.id_field) for name, c in COMMANDS.items()
}

#: The schema version new events are written with.
CURRENT_VERSION: dict[str, int] = dict.fromkeys(EVENTS, 1) | risks.SCHEMA_VERSIONS

#: (event_type, from_version) -> function turning that payload into from_version + 1.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {**risks.UPCASTERS}


class UnknownEventType(LookupError):
    pass


def payload_of(envelope: EventEnvelope) -> FrozenModel:
    """The typed payload of an envelope, upcast to the current schema version.

    Old events are never rewritten in the log; they are brought up to date on every read.
    """
    return parse_payload(envelope.event_type, envelope.payload, envelope.schema_version)


def parse_payload(event_type: str, payload: dict[str, Any], schema_version: int) -> FrozenModel:
    model = EVENTS.get(event_type)
    if model is None:
        raise UnknownEventType(event_type)
    version = schema_version
    while version < CURRENT_VERSION[event_type]:
        payload = UPCASTERS[(event_type, version)](payload)
        version += 1
    return model.model_validate(payload)
