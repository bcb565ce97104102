"""Intake's read model: a summary row per project (`portfolio.query.intake.projects`), and
every command id in the log with the position of its first event (command_ids.py).

Aggregate versions come from the log itself (each loaded aggregate knows its history, see
aggregates.py); the command ids are loaded into memory at start, so nothing here is read
on the path of a command.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, bindparam, select

from contracts import projects as p
from contracts.base import EventEnvelope, RecordedEvent
from contracts.registry import payload_of
from services.intake.command_ids import CommandIds
from shared.commands import event_id_for
from shared.db import insert_many
from shared.projection import CannotApply, Projection
from shared.projects_view import apply_project_event, projects_table, proposed_row

NAME = "intake"


def first_event_id(command_id: str) -> str:
    """The id intake gives a command's first event (shared/commands.py, envelope_for)."""
    return event_id_for(command_id, 0)


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
        self._known = select(self.commands.c.command_id).where(
            self.commands.c.command_id.in_(bindparam("ids", expanding=True))
        )
        self._new_commands: dict[str, int] = {}
        #: Every project id in the projects table as committed (plus this batch's, once
        #: flushed): a proposal is checked against it instead of a query per event.
        self._project_ids: set[str] = set()
        #: This batch's proposals, inserted in one statement when the batch is flushed.
        self._proposed: dict[str, dict[str, object]] = {}

    def load(self, conn: Connection) -> None:
        # Only ever adds: what the index holds are facts of the log, true whatever the
        # database has committed so far.
        rows = conn.execute(select(self.commands.c.command_id, self.commands.c.position))
        self.command_ids.add_many((command_id, position) for command_id, position in rows)
        # Exactly what is committed (called again after a failed batch and a rebuild).
        self._project_ids = set(conn.execute(select(self.projects.c.project_id)).scalars())
        self._proposed.clear()

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        envelope = event.envelope
        if envelope.event_id == first_event_id(envelope.causation_id):
            self._new_commands.setdefault(envelope.causation_id, event.position)
            self.command_ids.add(envelope.causation_id, event.position)
        if envelope.aggregate_type != p.AGGREGATE:
            return
        if envelope.event_type == "ProjectProposed":
            self._propose(envelope, event.position)
            return
        if envelope.aggregate_id in self._proposed:
            self._insert_proposed(conn)  # the row this event changes is written first
        apply_project_event(conn, self.projects, event)

    def _propose(self, envelope: EventEnvelope, position: int) -> None:
        """What `apply_project_event` does with a proposal (same refusal, same row), with
        the row kept for the batch's one insert."""
        payload = payload_of(envelope)
        assert isinstance(payload, p.ProjectProposed)
        project_id = payload.project_id
        if project_id in self._project_ids or project_id in self._proposed:
            raise CannotApply(f"project {envelope.aggregate_id} was already proposed")
        self._proposed[project_id] = proposed_row(payload, position)

    def _insert_proposed(self, conn: Connection) -> None:
        if self._proposed:
            insert_many(conn, self.projects, list(self._proposed.values()))
            self._project_ids.update(self._proposed)
            self._proposed.clear()

    def flush(self, conn: Connection) -> None:
        self._insert_proposed(conn)
        if self._new_commands:
            # Only an id the index first saw elsewhere can already be in the table: every
            # row is in the index (`load`), at a position before this batch, and the index
            # keeps an id's lowest position. The others (nearly all) are new: not looked up.
            unsure = [
                command_id
                for command_id, position in self._new_commands.items()
                if self.command_ids.first_position(command_id) != position
            ]
            known = set(conn.execute(self._known, {"ids": unsure}).scalars()) if unsure else set()
            # An id stored twice (a reuse past the duplicate window, before ids were checked)
            # keeps its first position.
            rows: list[dict[str, object]] = [
                {"command_id": command_id, "position": position}
                for command_id, position in self._new_commands.items()
                if command_id not in known
            ]
            if rows:
                insert_many(conn, self.commands, rows)
            self._new_commands.clear()
        super().flush(conn)

    def discard(self) -> None:
        self._new_commands.clear()
        self._proposed.clear()
        super().discard()
