"""The ledger's read model: every pool and role in memory, folded from the ledger's facts,
which are kept in a table so that a restart folds them again without reading the log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Connection, Integer, MetaData, String, Table, select

from contracts import ledger as lg
from contracts.base import RecordedEvent
from contracts.registry import parse_payload
from domain.deciders import evolve
from domain.ledger import CapacityState, PoolState
from shared.projection import CannotApply, Projection
from shared.projects_view import apply_project_event, projects_table

NAME = "ledger"
THRESHOLD_EVENTS = frozenset(t.__name__ for t in lg.THRESHOLD_EVENTS)
#: The payload fields naming what a change touched: a pool's projects, a role's months.
PART_FIELDS = ("project_id", "from_project_id", "to_project_id", "period")


class LedgerProjection(Projection):
    name = NAME

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, NAME)
        self.facts = Table(
            "ledger_facts",
            self.metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("aggregate_type", String(32), nullable=False),
            Column("aggregate_id", String(64), nullable=False),
            Column("event_type", String(64), nullable=False),
            Column("schema_version", Integer, nullable=False),
            Column("payload", JSON, nullable=False),
        )
        self.pools: dict[str, PoolState] = {}
        self.roles: dict[str, CapacityState] = {}
        #: The last position folded per (aggregate type, id): the expected position of a
        #: threshold event appended to it.
        self.last_position: dict[tuple[str, str], int] = {}
        #: Aggregates changed since the thresholds were last checked, with their cause,
        #: and what changed in each: a pool's projects, a role's months.
        self.touched: dict[tuple[str, str], RecordedEvent] = {}
        self.touched_parts: dict[tuple[str, str], set[str]] = {}

    def load(self, conn: Connection) -> None:
        self.pools, self.roles, self.last_position, self.touched = {}, {}, {}, {}
        self.touched_parts = {}
        for row in conn.execute(select(self.facts).order_by(self.facts.c.position)):
            self._fold(
                row.aggregate_type,
                row.aggregate_id,
                row.event_type,
                row.schema_version,
                row.payload,
                row.position,
            )

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        apply_project_event(conn, self.projects, event)
        e = event.envelope
        if e.aggregate_type not in (lg.POOL, lg.CAPACITY):
            return
        try:
            self._fold(
                e.aggregate_type,
                e.aggregate_id,
                e.event_type,
                e.schema_version,
                e.payload,
                event.position,
            )
        except (ValueError, KeyError, AttributeError) as error:
            raise CannotApply(
                f"{e.event_type} on {e.aggregate_type} {e.aggregate_id}: {error}"
            ) from error
        self.insert_later(
            self.facts,
            {
                "position": event.position,
                "aggregate_type": e.aggregate_type,
                "aggregate_id": e.aggregate_id,
                "event_type": e.event_type,
                "schema_version": e.schema_version,
                "payload": e.payload,
            },
        )
        if e.event_type not in THRESHOLD_EVENTS:
            key = (e.aggregate_type, e.aggregate_id)
            self.touched[key] = event
            parts = self.touched_parts.setdefault(key, set())
            for name in PART_FIELDS:
                if isinstance(part := e.payload.get(name), str):
                    parts.add(part)

    def _fold(
        self,
        aggregate_type: str,
        aggregate_id: str,
        event_type: str,
        schema_version: int,
        payload: Any,
        position: int,
    ) -> None:
        typed = parse_payload(event_type, payload, schema_version)
        states: dict[str, Any] = self.pools if aggregate_type == lg.POOL else self.roles
        states[aggregate_id] = evolve(states.get(aggregate_id), typed)
        self.last_position[(aggregate_type, aggregate_id)] = position
