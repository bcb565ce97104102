"""Appending a service's own decisions (rankings, thresholds, alerts) to the log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts.base import AppendedEvent, EventEnvelope, FrozenModel, RecordedEvent
from contracts.registry import CURRENT_VERSION
from shared.commands import EVENT_ID_NAMESPACE
from shared.eventlog import EventLog


async def append_decision(
    event_log: EventLog,
    aggregate: tuple[str, str],
    decision: FrozenModel,
    identity: str,
    cause: RecordedEvent | None,
    actor: str,
    source: str,
    expected_position: int | None = None,
) -> AppendedEvent:
    """Append one of the service's own decisions. The event id derives from what was
    decided (`identity`), so a retried append is stored once. `expected_position`: the
    aggregate's last position the decision was computed from (a conflict then means it is
    stale); None appends after whatever the aggregate holds now."""
    envelope = decision_envelope(aggregate, decision, identity, cause, actor, source)
    expected = expected_position
    if expected is None:
        expected = await event_log.last_position_of(*aggregate)
    appended = await event_log.append(envelope, expected_last_position=expected)
    return AppendedEvent(
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        aggregate_type=aggregate[0],
        aggregate_id=aggregate[1],
        position=appended.position,
        version=0,
    )


def decision_envelope(
    aggregate: tuple[str, str],
    decision: FrozenModel,
    identity: str,
    cause: RecordedEvent | None,
    actor: str,
    source: str,
) -> EventEnvelope:
    """The envelope `append_decision` appends: its event id derived from `identity`, its
    correlation and causation from the cause (or the identity), recorded now."""
    now = datetime.now(UTC)
    event_type = type(decision).__name__
    return EventEnvelope(
        event_id=str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{event_type}/{identity}")),
        event_type=event_type,
        schema_version=CURRENT_VERSION.get(event_type, 1),
        aggregate_type=aggregate[0],
        aggregate_id=aggregate[1],
        actor=actor,
        source=source,
        occurred_at=now,
        recorded_at=now,
        correlation_id=cause.envelope.correlation_id if cause else identity,
        causation_id=cause.envelope.event_id if cause else identity,
        payload=decision.model_dump(mode="json"),
    )
