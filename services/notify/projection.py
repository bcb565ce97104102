"""The notify service's read model: the subscriptions and every delivery outcome, folded
from the log (kept in a table, so a restart folds them again without reading the log)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Connection, DateTime, Integer, MetaData, String, Table, select

from contracts import notify as n
from contracts.base import FrozenModel, RecordedEvent
from contracts.registry import parse_payload
from domain.subscriptions import SubscriptionState, evolve_subscription
from shared.projection import CannotApply, Projection

NAME = "notify"
TYPES = frozenset(t.__name__ for t in n.EVENTS)


@dataclass
class Subscription:
    state: SubscriptionState
    #: When it was (last) subscribed: its consumer starts with the alerts from then on.
    since: datetime


class NotifyProjection(Projection):
    name = NAME

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.facts = Table(
            "notify_facts",
            self.metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("event_type", String(64), nullable=False),
            Column("schema_version", Integer, nullable=False),
            Column("recorded_at", DateTime(timezone=True), nullable=False),
            Column("payload", JSON, nullable=False),
        )
        self.reset()

    def reset(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self.outcomes: list[dict[str, Any]] = []
        #: (subscription id, alert event id) already delivered or dead-lettered.
        self.done: set[tuple[str, str]] = set()
        #: Set when subscriptions changed: the workers are brought in line after the batch.
        self.changed = True

    def load(self, conn: Connection) -> None:
        self.reset()
        for row in conn.execute(select(self.facts).order_by(self.facts.c.position)):
            event = parse_payload(row.event_type, row.payload, row.schema_version)
            self._fold(event, row.position, row.recorded_at)

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        e = event.envelope
        if e.event_type not in TYPES:
            return
        try:
            self._fold(
                parse_payload(e.event_type, e.payload, e.schema_version),
                event.position,
                e.recorded_at,
            )
        except (ValueError, KeyError) as error:
            raise CannotApply(f"{e.event_type} on {e.aggregate_id}: {error}") from error
        self.insert_later(
            self.facts,
            {
                "position": event.position,
                "event_type": e.event_type,
                "schema_version": e.schema_version,
                "recorded_at": e.recorded_at,
                "payload": e.payload,
            },
        )

    def _fold(self, event: FrozenModel, position: int, at: datetime) -> None:
        match event:
            case n.Subscribed() | n.Unsubscribed():
                found = self.subscriptions.get(event.subscription_id)
                state = evolve_subscription(None if found is None else found.state, event)
                since = at if isinstance(event, n.Subscribed) else (found.since if found else at)
                self.subscriptions[event.subscription_id] = Subscription(state, since)
                self.changed = True
            case n.AlertDelivered() | n.AlertDeadLettered():
                self.record(event, position, at)

    def record(
        self,
        event: n.AlertDelivered | n.AlertDeadLettered,
        position: int | None,
        at: datetime | None,
    ) -> None:
        key = (event.subscription_id, event.alert_event_id)
        if key in self.done:
            return
        self.done.add(key)
        self.outcomes.append(
            {
                "outcome": "delivered" if isinstance(event, n.AlertDelivered) else "dead_letter",
                "position": position,
                "at": None if at is None else at.isoformat(),
                **event.model_dump(mode="json"),
            }
        )

    def active(self) -> dict[str, Subscription]:
        return {k: v for k, v in self.subscriptions.items() if v.state.active}
