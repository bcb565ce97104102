"""Intake's read model: project summaries, aggregate versions and processed command ids.

Processed command ids make idempotency outlive the stream's duplicate window.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, Text, select, update

from contracts.base import AppendedEvent, CommandAccepted, RecordedEvent
from shared.projection import Projection
from shared.projects_view import apply_project_event, projects_table

NAME = "intake"


class IntakeProjection(Projection):
    name = NAME

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, NAME)
        self.aggregates = Table(
            "intake_aggregates",
            self.metadata,
            Column("aggregate_type", String(64), primary_key=True),
            Column("aggregate_id", String(64), primary_key=True),
            Column("version", Integer, nullable=False),
            Column("last_position", Integer, nullable=False),
        )
        self.processed = Table(
            "intake_processed_commands",
            self.metadata,
            Column("command_id", String(128), primary_key=True),
            Column("reply", Text, nullable=False),
        )

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        apply_project_event(conn, self.projects, event)
        version = self._bump_version(conn, event)
        self._record_command(conn, event, version)

    def _bump_version(self, conn: Connection, event: RecordedEvent) -> int:
        e = event.envelope
        key = (self.aggregates.c.aggregate_type == e.aggregate_type) & (
            self.aggregates.c.aggregate_id == e.aggregate_id
        )
        current = conn.scalar(select(self.aggregates.c.version).where(key))
        if current is None:
            conn.execute(
                self.aggregates.insert().values(
                    aggregate_type=e.aggregate_type,
                    aggregate_id=e.aggregate_id,
                    version=1,
                    last_position=event.position,
                )
            )
            return 1
        conn.execute(
            update(self.aggregates)
            .where(key)
            .values(version=current + 1, last_position=event.position)
        )
        return int(current) + 1

    def _record_command(self, conn: Connection, event: RecordedEvent, version: int) -> None:
        e = event.envelope
        appended = AppendedEvent(
            event_id=e.event_id,
            event_type=e.event_type,
            aggregate_type=e.aggregate_type,
            aggregate_id=e.aggregate_id,
            position=event.position,
            version=version,
        )
        key = self.processed.c.command_id == e.causation_id
        existing = conn.scalar(select(self.processed.c.reply).where(key))
        if existing is None:
            reply = CommandAccepted(command_id=e.causation_id, events=(appended,))
            conn.execute(
                self.processed.insert().values(
                    command_id=e.causation_id, reply=reply.model_dump_json()
                )
            )
            return
        earlier = CommandAccepted.model_validate_json(existing)
        reply = CommandAccepted(command_id=e.causation_id, events=(*earlier.events, appended))
        conn.execute(update(self.processed).where(key).values(reply=reply.model_dump_json()))

    def processed_replies(
        self, conn: Connection, command_ids: list[str]
    ) -> dict[str, CommandAccepted]:
        rows = conn.execute(
            select(self.processed.c.command_id, self.processed.c.reply).where(
                self.processed.c.command_id.in_(command_ids)
            )
        )
        return {row.command_id: CommandAccepted.model_validate_json(row.reply) for row in rows}

    def processed_reply(self, conn: Connection, command_id: str) -> CommandAccepted | None:
        found = conn.scalar(
            select(self.processed.c.reply).where(self.processed.c.command_id == command_id)
        )
        return None if found is None else CommandAccepted.model_validate_json(found)
