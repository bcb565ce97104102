"""The risk monitor's read model: the alert monitor (`domain.risk.monitor`) folded from every
fact it reads (projects' lifecycle, pools, capacity, risks, baselines, rules), and the alert
events it decided that are not in the log yet.

Decisions are made one fact at a time while a batch is applied, never once per batch, so
the alerts are a function of the facts whatever the batch size. They are appended after
the batch (`handlers.flush_alerts`); an alert event read back from the log is known by its
event id (derived from what was decided) and leaves the pending list. On a restart the
facts are folded again: what was decided and is not in the log is appended then.

A log written by an earlier version holds alert events these rules did not decide (legacy).
They are never re-announced: decisions on facts before the last of them count as made, and
whatever the legacy alerts left open that does not hold now is cleared once (and what holds
but is not open is raised), so that the announced alerts agree with the figures again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, DateTime, Integer, MetaData, String, Table, select

from contracts import risks as r
from contracts.base import FrozenModel, RecordedEvent
from contracts.registry import parse_payload
from domain.risk import alerts
from domain.risk.monitor import INPUT_EVENTS, AlertMonitor
from shared.commands import EVENT_ID_NAMESPACE
from shared.db import JsonDocument
from shared.projection import CannotApply, Projection
from shared.projects_view import apply_project_event, projects_table

NAME = "risk"
INPUT_TYPES = frozenset(t.__name__ for t in INPUT_EVENTS)
ALERT_TYPES = frozenset(t.__name__ for t in r.ALERT_EVENTS)


def identity(event: alerts.AlertEvent, cause_id: str) -> str:
    """What makes an alert decision unique: its episode, and for a revision its cause."""
    match event:
        case r.AlertRaised():
            return f"{event.alert_id}/raised"
        case r.AlertCleared():
            return f"{event.alert_id}/cleared"
    return f"{event.alert_id}/revised/{event.rule_revision}/{cause_id}"


def event_id_of(event: alerts.AlertEvent, key: str) -> str:
    """The event id `shared.decisions.append_decision` gives this decision."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{type(event).__name__}/{key}"))


@dataclass
class Pending:
    event: alerts.AlertEvent
    identity: str
    event_id: str
    cause_position: int
    cause: RecordedEvent | None = None
    #: In the log already (at `position`); only the publication on the alerts stream is left.
    appended: bool = False
    position: int = 0


class RiskProjection(Projection):
    name = NAME

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, NAME)
        self.facts = Table(
            "risk_facts",
            self.metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("event_id", String(64), nullable=False),
            Column("event_type", String(64), nullable=False),
            Column("schema_version", Integer, nullable=False),
            Column("recorded_at", DateTime(timezone=True), nullable=True),
            Column("payload", JsonDocument, nullable=False),
        )
        self.reset()

    def reset(self) -> None:
        self.monitor = AlertMonitor()
        #: Decided and not yet seen in the log, by event id, in the order decided.
        self.pending: dict[str, Pending] = {}
        #: How many alert events this monitor has decided since it was reset.
        self.decided = 0

    # --- folding -------------------------------------------------------------------------------

    def load(self, conn: Connection) -> None:
        self.reset()
        decided_ids: set[str] = set()
        logged: list[tuple[int, str, FrozenModel]] = []
        for row in conn.execute(select(self.facts).order_by(self.facts.c.position)):
            event = parse_payload(row.event_type, row.payload, row.schema_version)
            if row.event_type in ALERT_TYPES:
                logged.append((row.position, row.event_id, event))
                continue
            for item in self._decide(event, row.event_id, row.position, row.recorded_at, None):
                decided_ids.add(item.event_id)
        logged_ids = {event_id for _, event_id, _ in logged}
        for event_id in logged_ids:
            self.pending.pop(event_id, None)
        legacy = [position for position, event_id, _ in logged if event_id not in decided_ids]
        if legacy:
            self._reconcile(max(legacy), [event for _, _, event in logged])

    def _reconcile(self, mark: int, logged: list[FrozenModel]) -> None:
        """After an upgrade: nothing decided before the last legacy alert is announced
        again; the alerts then open are brought to agree with the figures."""
        self.pending = {k: v for k, v in self.pending.items() if v.cause_position > mark}
        announced = alerts.AlertState()
        for event in [*logged, *(item.event for item in self.pending.values())]:
            announced = alerts.evolve_alerts(announced, event)
        live = {a.alert_id: a for a in self.monitor.open_alerts()}
        for key, stale in sorted(announced.open.items()):
            found = self.monitor.open.get(key)
            if found is not None and found.alert_id == stale.alert_id:
                continue
            cleared = r.AlertCleared(
                alert_id=stale.alert_id,
                rule_id=stale.rule_id,
                rule_revision=stale.rule_revision,
                metric=stale.metric,
                severity=stale.severity,
                subject_id=stale.subject_id,
                project_id=stale.project_id,
                value=None,
                clear_at=stale.clear_at,
                reason="re-evaluated on the current figures after an upgrade",
                cause_position=mark,
                audit_link=stale.audit_link,
                message=f"{stale.metric} alert for {stale.subject_id} does not hold on the "
                f"current figures (rule {stale.rule_id})",
            )
            self._queue(cleared, f"reconciled/{mark}", mark, None)
        open_ids = {a.alert_id for a in announced.open.values()}
        for alert_id, alert in sorted(live.items()):
            if alert_id not in open_ids and not any(
                isinstance(x.event, r.AlertRaised) and x.event.alert_id == alert_id
                for x in self.pending.values()
            ):
                self._queue(alert.raised, f"reconciled/{mark}", mark, None)

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        apply_project_event(conn, self.projects, event)
        e = event.envelope
        if e.event_type not in INPUT_TYPES and e.event_type not in ALERT_TYPES:
            return
        try:
            self.fold_recorded(event)
        except (ValueError, KeyError, AttributeError) as error:
            raise CannotApply(f"{e.event_type} on {e.aggregate_id}: {error}") from error
        self.insert_later(
            self.facts,
            {
                "position": event.position,
                "event_id": e.event_id,
                "event_type": e.event_type,
                "schema_version": e.schema_version,
                "recorded_at": e.recorded_at,
                "payload": e.payload,
            },
        )

    def fold_recorded(self, event: RecordedEvent) -> list[Pending]:
        """Fold one event of the log (no database): a fact is decided on at once; an alert
        event is one of ours arriving (or a legacy one, kept only in the facts)."""
        e = event.envelope
        payload = parse_payload(e.event_type, e.payload, e.schema_version)
        if e.event_type in ALERT_TYPES:
            self.pending.pop(e.event_id, None)
            return []
        if e.event_type not in INPUT_TYPES:
            return []
        return self._decide(payload, e.event_id, event.position, e.recorded_at, event)

    def _decide(
        self,
        event: FrozenModel,
        event_id: str,
        position: int,
        at: datetime | None,
        cause: RecordedEvent | None,
    ) -> list[Pending]:
        return [
            self._queue(decided, event_id, position, cause)
            for decided in self.monitor.fold(event, event_id, position, at)
        ]

    def _queue(
        self, event: alerts.AlertEvent, cause_id: str, position: int, cause: RecordedEvent | None
    ) -> Pending:
        key = identity(event, cause_id)
        item = Pending(event, key, event_id_of(event, key), position, cause)
        self.pending[item.event_id] = item
        self.decided += 1
        return item


def open_alerts(projection: RiskProjection) -> list[dict[str, Any]]:
    return [alert.view() for alert in projection.monitor.open_alerts()]
