"""Prioritization's read model: the `PortfolioView` in memory, mirrored in tables so that a
restart resumes from the database, plus its own view of the projects.

A candidate row holds the project's profile (`domain.projects.ProjectProfile`). Each row
names the log position that last wrote it; a database from before that column (whose
candidate rows held fewer fields) is rebuilt from the log at start, as any table whose
columns changed is."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
)

from contracts import objectives as o
from contracts import prioritization as pr
from contracts import projects as p
from contracts.base import RecordedEvent
from domain.prioritization import CandidateData, ModelData, PortfolioView
from shared.projection import Projection
from shared.projects_view import apply_project_event, projects_table

NAME = "prioritization"
CANDIDATE = TypeAdapter(CandidateData)
MODEL = TypeAdapter(ModelData)
RANKING = TypeAdapter(pr.RankingDecided)


class PrioritizationProjection(Projection):
    name = NAME

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, NAME)
        self.entities = Table(
            "prioritization_view",
            self.metadata,
            Column("kind", String(16), primary_key=True),
            Column("key", String(64), primary_key=True),
            Column("data", JSON, nullable=False),
            Column("position", Integer, nullable=False),
        )
        self.view = PortfolioView()
        #: The last ranking decided per model, to tell whether a new one says anything new.
        self.last_ranking: dict[str, pr.RankingDecided] = {}
        #: Set when an input of the ranking changed; the ranking worker clears it.
        self.dirty = False
        self.last_input: RecordedEvent | None = None
        #: Rows to write at the end of the batch, the latest value per (kind, key), and the
        #: position of the event that wrote it.
        self._puts: dict[tuple[str, str], tuple[Any, int]] = {}

    def load(self, conn: Connection) -> None:
        self._puts = {}
        view = PortfolioView()
        self.last_ranking = {}
        for row in conn.execute(select(self.entities)):
            match row.kind:
                case "candidate":
                    view.candidates[row.key] = CANDIDATE.validate_python(row.data)
                case "objective":
                    view.objective_weights[row.key] = float(row.data)
                case "model":
                    view.models[row.key] = MODEL.validate_python(row.data)
                case "ranking":
                    ranking = RANKING.validate_python(row.data)
                    self.last_ranking[row.key] = ranking
                    view.last_ranks[row.key] = {r.project_id: r.rank for r in ranking.ranking}
                case "position":
                    view.position = int(row.data)
        self.view = view

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        apply_project_event(conn, self.projects, event)
        if self.view.apply(event):
            self.dirty = True
            self.last_input = event
        self._save(event)

    def flush(self, conn: Connection) -> None:
        """One delete and one insert per batch for every row the batch changed."""
        super().flush(conn)
        if not self._puts:
            return
        c = self.entities.c
        matching = (c.kind == bindparam("b_kind")) & (c.key == bindparam("b_key"))
        conn.execute(
            delete(self.entities).where(matching),
            [{"b_kind": kind, "b_key": key} for kind, key in self._puts],
        )
        rows = [
            {"kind": kind, "key": key, "data": data, "position": position}
            for (kind, key), (data, position) in self._puts.items()
            if data is not None
        ]
        if rows:
            conn.execute(insert(self.entities), rows)
        self._puts = {}

    def discard(self) -> None:
        super().discard()
        self._puts = {}

    def _save(self, event: RecordedEvent) -> None:
        e = event.envelope
        at = event.position
        self._put("position", "", self.view.position, at)
        if e.aggregate_type == p.AGGREGATE and e.aggregate_id in self.view.candidates:
            data = CANDIDATE.dump_python(self.view.candidates[e.aggregate_id], mode="json")
            self._put("candidate", e.aggregate_id, data, at)
        elif e.aggregate_type == o.AGGREGATE:
            weight = self.view.objective_weights.get(e.aggregate_id)
            self._put("objective", e.aggregate_id, weight, at)
        elif e.aggregate_type == pr.SCORING_MODEL:
            data = MODEL.dump_python(self.view.models[e.aggregate_id], mode="json")
            self._put("model", e.aggregate_id, data, at)
        elif e.event_type == pr.RankingDecided.__name__:
            ranking = pr.RankingDecided.model_validate(e.payload)
            self.last_ranking[ranking.model_id] = ranking
            self._put("ranking", ranking.model_id, ranking.model_dump(mode="json"), at)

    def _put(self, kind: str, key: str, data: Any, position: int) -> None:
        self._puts[(kind, key)] = (data, position)
