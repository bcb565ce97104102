"""The ledger service's read model. For now: its own view of the projects."""

from __future__ import annotations

from shared.projects_view import ProjectsProjection

NAME = "ledger"


class LedgerProjection(ProjectsProjection):
    def __init__(self) -> None:
        super().__init__(NAME)
