"""Intake's read model: a summary row per project (`portfolio.query.intake.projects`).

Idempotency and the versions decisions are made on come from the log itself (each loaded
aggregate knows the commands in its history, see aggregates.py), so nothing here is on the
path of a command and the projection stays one cheap write per event.
"""

from __future__ import annotations

from sqlalchemy import Connection, MetaData

from contracts.base import RecordedEvent
from shared.projection import Projection
from shared.projects_view import apply_project_event, projects_table

NAME = "intake"


class IntakeProjection(Projection):
    name = NAME

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, NAME)

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        apply_project_event(conn, self.projects, event)
