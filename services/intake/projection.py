"""Intake's read model: a summary row per project (`portfolio.query.intake.projects`), and
every command id in the log with the position of its first event (command_ids.py).

Aggregate versions come from the log itself (each loaded aggregate knows its history, see
aggregates.py); the command ids are loaded into memory at start, so nothing here is read
on the path of a command.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, select

from contracts.base import RecordedEvent
from services.intake.command_ids import CommandIds
from shared.commands import EVENT_ID_NAMESPACE
from shared.projection import Projection
from shared.projects_view import apply_project_event, projects_table

NAME = "intake"


def first_event_id(command_id: str) -> str:
    """The id intake gives a command's first event (shared/commands.py, envelope_for)."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{command_id}/0"))


class IntakeProjection(Projection):
    name = NAME

    def __init__(self, command_ids: CommandIds | None = None) -> None:
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, NAME)
        self.commands = Table(
            f"{NAME}_commands",
            self.metadata,
            Column("command_id", String(128), primary_key=True),
            Column("position", Integer, nullable=False),
        )
        self.command_ids = command_ids or CommandIds()
        self._new_commands: dict[str, int] = {}

    def load(self, conn: Connection) -> None:
        # Only ever adds: what the index holds are facts of the log, true whatever the
        # database has committed so far.
        for command_id, position in conn.execute(
            select(self.commands.c.command_id, self.commands.c.position)
        ):
            self.command_ids.add(command_id, position)

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        envelope = event.envelope
        if envelope.event_id == first_event_id(envelope.causation_id):
            self._new_commands.setdefault(envelope.causation_id, event.position)
            self.command_ids.add(envelope.causation_id, event.position)
        apply_project_event(conn, self.projects, event)

    def flush(self, conn: Connection) -> None:
        if self._new_commands:
            known = set(
                conn.execute(
                    select(self.commands.c.command_id).where(
                        self.commands.c.command_id.in_(list(self._new_commands))
                    )
                ).scalars()
            )
            # An id stored twice (a reuse past the duplicate window, before ids were checked)
            # keeps its first position.
            rows = [
                {"command_id": command_id, "position": position}
                for command_id, position in self._new_commands.items()
                if command_id not in known
            ]
            if rows:
                conn.execute(self.commands.insert(), rows)
            self._new_commands.clear()
        super().flush(conn)

    def discard(self) -> None:
        self._new_commands.clear()
        super().discard()
