"""Prioritization's read model: the `PortfolioView` in memory, mirrored in tables so that a
restart resumes from the database, plus its own view of the projects.

A candidate row holds the project's profile (`domain.projects.ProjectProfile`). Each row
names the log position that last wrote it; a database from before that column (whose
candidate rows held fewer fields) is rebuilt from the log at start, as any table whose
columns changed is.

The ledger's capacity and demand (what selection is bounded by) are kept one row per
role and month (`project` empty: the capacity line) and per role, month and project (a
demand), written in the same transaction as the position; at load they are folded again
through the same pure fold, capacity lines first. A database from before this table is
rebuilt from the log at start (the runner rebuilds a projection that lacks one of its
tables)."""

from __future__ import annotations

from decimal import Decimal
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

from contracts import ledger as lg
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
        self.cells = Table(
            "prioritization_capacity",
            self.metadata,
            Column("role", String(64), primary_key=True),
            Column("period", String(16), primary_key=True),
            #: "" for the role's capacity line, else the project whose demand this is.
            Column("project", String(64), primary_key=True),
            Column("amount", String(32), nullable=False),
            Column("time_off", String(32), nullable=True),
            Column("unit", String(16), nullable=False),
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
        #: Capacity rows to write at the end of the batch (None: delete the row).
        self._cell_puts: dict[tuple[str, str, str], dict[str, Any] | None] = {}

    def load(self, conn: Connection) -> None:
        self._puts = {}
        self._cell_puts = {}
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
        c = self.cells.c
        for row in conn.execute(select(self.cells).order_by(c.project != "", c.role, c.period)):
            unit = lg.CapacityUnit(row.unit)
            if row.project == "":
                line = lg.CapacitySet(
                    role=row.role,
                    period=row.period,
                    amount=Decimal(row.amount),
                    unit=unit,
                    time_off=Decimal(row.time_off or 0),
                )
                view.capacity.apply(line)
            else:
                demand = lg.DemandAssigned(
                    role=row.role,
                    project_id=row.project,
                    period=row.period,
                    amount=Decimal(row.amount),
                    previous_amount=Decimal(0),
                    unit=unit,
                )
                view.capacity.apply(demand)
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
        self._flush_cells(conn)
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

    def _flush_cells(self, conn: Connection) -> None:
        if not self._cell_puts:
            return
        c = self.cells.c
        matching = (
            (c.role == bindparam("b_role"))
            & (c.period == bindparam("b_period"))
            & (c.project == bindparam("b_project"))
        )
        conn.execute(
            delete(self.cells).where(matching),
            [{"b_role": r, "b_period": m, "b_project": j} for r, m, j in self._cell_puts],
        )
        rows = [row for row in self._cell_puts.values() if row is not None]
        if rows:
            conn.execute(insert(self.cells), rows)
        self._cell_puts = {}

    def discard(self) -> None:
        super().discard()
        self._puts = {}
        self._cell_puts = {}

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
        elif e.event_type in (lg.CapacitySet.__name__, lg.DemandAssigned.__name__):
            self._save_cell(e.payload, at)
        elif e.event_type == pr.RankingDecided.__name__:
            ranking = pr.RankingDecided.model_validate(e.payload)
            self.last_ranking[ranking.model_id] = ranking
            self._put("ranking", ranking.model_id, ranking.model_dump(mode="json"), at)

    def _save_cell(self, payload: dict[str, Any], position: int) -> None:
        """The row of the cell an event changed, as the view now holds it."""
        role, period = str(payload["role"]), str(payload["period"])
        project = str(payload.get("project_id", ""))
        state = self.view.capacity.cells.get((role, period))
        if state is None:
            return  # demand on a role without capacity: not folded, nothing to keep
        key = (role, period, project)
        row: dict[str, Any] = {
            "role": role,
            "period": period,
            "project": project,
            "unit": str(state.unit),
            "time_off": None,
            "position": position,
        }
        if project == "":
            line = state.capacity[period]
            figures = {"amount": str(line.amount), "time_off": str(line.time_off)}
            self._cell_puts[key] = row | figures
            return
        amount = state.demand.get((project, period))
        self._cell_puts[key] = None if amount is None else row | {"amount": str(amount)}

    def _put(self, kind: str, key: str, data: Any, position: int) -> None:
        self._puts[(kind, key)] = (data, position)
