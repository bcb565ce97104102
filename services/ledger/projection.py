"""The ledger's read model: every pool and role in memory, folded from the ledger's facts,
which are kept in a table so that a restart folds them again without reading the log.

Threshold events are decided one fact at a time, as each fact is folded, against the
thresholds the facts before it raised: so they are the same for the same facts however
the log was batched. They are appended after the batch (`handlers.flush_thresholds`); one
read back from the log is known by its event id (derived from the fact that caused it and
its index) and leaves the pending list; the state never folds them a second time.

A log from an earlier version holds threshold events decided per batch (legacy): decisions
on facts before the last of them count as made, and where what they announced differs
from the figures now, the difference is appended once.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, select

from contracts import ledger as lg
from contracts.base import FrozenModel, RecordedEvent
from contracts.registry import parse_payload
from domain.deciders import evolve
from domain.ledger import (
    ZERO,
    CapacityState,
    PoolState,
    capacity_threshold_events,
    pool_threshold_events,
    with_changes,
)
from domain.ledger.sums import sums_only
from shared.commands import EVENT_ID_NAMESPACE
from shared.db import JsonDocument
from shared.projection import CannotApply, Projection
from shared.projects_view import apply_project_event, projects_table

NAME = "ledger"
THRESHOLD_EVENTS = frozenset(t.__name__ for t in lg.THRESHOLD_EVENTS)
#: The payload fields naming what a change touched: a pool's projects, a role's months.
PART_FIELDS = ("project_id", "from_project_id", "to_project_id", "period")


@functools.cache
def _part_fields(model: type[FrozenModel]) -> tuple[str, ...]:
    """The `PART_FIELDS` an event type has, looked up once per type."""
    return tuple(name for name in PART_FIELDS if name in model.model_fields)


@dataclass
class PendingThreshold:
    event: FrozenModel
    aggregate: tuple[str, str]
    identity: str
    event_id: str
    cause_position: int
    cause: RecordedEvent | None = None


class LedgerProjection(Projection):
    name = NAME

    def __init__(self, tolerance_percent: Decimal = ZERO) -> None:
        self.tolerance_percent = tolerance_percent
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, NAME)
        self.facts = Table(
            "ledger_facts",
            self.metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("event_id", String(64), nullable=False),
            Column("aggregate_type", String(32), nullable=False),
            Column("aggregate_id", String(64), nullable=False),
            Column("event_type", String(64), nullable=False),
            Column("schema_version", Integer, nullable=False),
            Column("payload", JsonDocument, nullable=False),
        )
        self.reset()

    def reset(self) -> None:
        self.pools: dict[str, PoolState] = {}
        self.roles: dict[str, CapacityState] = {}
        #: Decided and not yet seen in the log, by event id, in the order decided.
        self.pending: dict[str, PendingThreshold] = {}

    def load(self, conn: Connection) -> None:
        self.reset()
        decided: set[str] = set()
        logged: list[tuple[int, str, tuple[str, str], FrozenModel]] = []
        for row in conn.execute(select(self.facts).order_by(self.facts.c.position)):
            typed = parse_payload(row.event_type, row.payload, row.schema_version)
            key = (row.aggregate_type, row.aggregate_id)
            if row.event_type in THRESHOLD_EVENTS:
                logged.append((row.position, row.event_id, key, typed))
                continue
            for item in self._fold(key, typed, row.event_id, row.position, None):
                decided.add(item.event_id)
        for _, event_id, _, _ in logged:
            self.pending.pop(event_id, None)
        legacy = [position for position, event_id, _, _ in logged if event_id not in decided]
        if legacy:
            self._reconcile(max(legacy), [(key, event) for _, _, key, event in logged])

    def _reconcile(self, mark: int, logged: list[tuple[tuple[str, str], FrozenModel]]) -> None:
        self.pending = {k: v for k, v in self.pending.items() if v.cause_position > mark}
        announced: dict[tuple[str, str], list[FrozenModel]] = {}
        for key, event in logged:
            announced.setdefault(key, []).append(event)
        for item in self.pending.values():
            announced.setdefault(item.aggregate, []).append(item.event)
        for key, events in sorted(announced.items()):
            kind, ident = key
            if kind == lg.POOL and ident in self.pools:
                pool = self.pools[ident]
                seen = with_changes(pool, raised_thresholds=frozenset(), overspent=frozenset())
                for event in events:
                    seen = evolve(seen, event)
                fixes = pool_threshold_events(seen, None)
            elif kind == lg.CAPACITY and ident in self.roles:
                role = self.roles[ident]
                seen_role = with_changes(role, over_allocated=frozenset())
                for event in events:
                    seen_role = evolve(seen_role, event)
                fixes = capacity_threshold_events(seen_role, self.tolerance_percent)
            else:
                continue
            for index, fix in enumerate(fixes):
                self._queue(key, fix, f"reconciled/{mark}/{kind}/{ident}/{index}", mark, None)

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        apply_project_event(conn, self.projects, event)
        e = event.envelope
        if e.aggregate_type not in (lg.POOL, lg.CAPACITY):
            return
        try:
            self.fold_recorded(event)
        except (ValueError, KeyError, AttributeError) as error:
            raise CannotApply(
                f"{e.event_type} on {e.aggregate_type} {e.aggregate_id}: {error}"
            ) from error
        self.insert_later(
            self.facts,
            {
                "position": event.position,
                "event_id": e.event_id,
                "aggregate_type": e.aggregate_type,
                "aggregate_id": e.aggregate_id,
                "event_type": e.event_type,
                "schema_version": e.schema_version,
                "payload": e.payload,
            },
        )

    def fold_recorded(self, event: RecordedEvent) -> list[PendingThreshold]:
        """Fold one pool or capacity event of the log (no database); a fact is decided on
        at once, a threshold event is one of ours arriving."""
        e = event.envelope
        if e.event_type in THRESHOLD_EVENTS:
            parse_payload(e.event_type, e.payload, e.schema_version)  # still a valid one
            self.pending.pop(e.event_id, None)
            return []
        typed = parse_payload(e.event_type, e.payload, e.schema_version)
        return self._fold(
            (e.aggregate_type, e.aggregate_id), typed, e.event_id, event.position, event
        )

    def _fold(
        self,
        key: tuple[str, str],
        event: FrozenModel,
        event_id: str,
        position: int,
        cause: RecordedEvent | None,
    ) -> list[PendingThreshold]:
        kind, ident = key
        values = event.__dict__  # a pydantic model's fields, without getattr's misses
        names = _part_fields(type(event))
        parts = {part for name in names if isinstance(part := values[name], str)}
        decided: list[FrozenModel]
        if kind == lg.POOL:
            pool: PoolState = evolve(self.pools.get(ident), event)
            # A project's overspend changes only with its own figures, which only an event
            # naming it changes: the pool's other overspent projects need no check then.
            decided = pool_threshold_events(pool, parts or pool.overspent)
            for found in decided:
                pool = evolve(pool, found)
            self.pools[ident] = sums_only(pool)
        else:
            role: CapacityState = evolve(self.roles.get(ident), event)
            decided = capacity_threshold_events(role, self.tolerance_percent, parts)
            for found in decided:
                role = evolve(role, found)
            self.roles[ident] = sums_only(role)
        return [
            self._queue(key, found, f"{event_id}/{index}", position, cause)
            for index, found in enumerate(decided)
        ]

    def _queue(
        self,
        key: tuple[str, str],
        event: FrozenModel,
        identity: str,
        position: int,
        cause: RecordedEvent | None,
    ) -> PendingThreshold:
        event_id = str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{type(event).__name__}/{identity}"))
        item = PendingThreshold(event, key, identity, event_id, position, cause)
        self.pending[event_id] = item
        return item
