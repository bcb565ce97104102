"""Intake's projects table, with a batch's proposals kept for one insert and checked against
the project ids in memory, holds exactly what the shared per-event fold writes, and refuses
the same events for the same reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, create_engine, select

from contracts import projects as p
from contracts.base import EventEnvelope, FrozenModel, RecordedEvent
from services.intake.projection import IntakeProjection, first_event_id
from shared.projection import CannotApply, Projection
from shared.projects_view import ProjectsProjection

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def proposed(project_id: str, name: str = "CRM") -> p.ProjectProposed:
    return p.ProjectProposed(
        project_id=project_id,
        name=name,
        description="",
        sponsor="sales",
        category="general",
        capex=Decimal("100000.00"),
        opex=Decimal("20000.50"),
        currency="EUR",
        planned_start=date(2026, 4, 1),
        planned_end=date(2026, 12, 31),
        mandatory=False,
        dependencies=(),
    )


def recorded(position: int, event: FrozenModel, aggregate_id: str | None = None) -> RecordedEvent:
    aggregate_id = aggregate_id or getattr(event, "project_id", "x")
    envelope = EventEnvelope(
        event_id=f"e-{position}",
        event_type=type(event).__name__,
        schema_version=1,
        aggregate_type=p.AGGREGATE,
        aggregate_id=aggregate_id,
        actor="alice",
        source="tests",
        occurred_at=NOW,
        recorded_at=NOW,
        correlation_id=f"c-{position}",
        causation_id=f"c-{position}",
        payload=event.model_dump(mode="json"),
    )
    return RecordedEvent(position=position, envelope=envelope)


BATCHES = [
    [
        recorded(1, proposed("A")),
        recorded(2, p.ProjectSubmittedForReview(project_id="A")),  # its row is still pending
        recorded(3, proposed("B")),
        recorded(4, proposed("A", "again")),  # already proposed in this batch
        recorded(5, p.ProjectApproved(project_id="A", rationale="good")),
    ],
    [
        recorded(6, proposed("B", "again")),  # proposed in an earlier batch
        recorded(7, p.ProjectSubmittedForReview(project_id="C")),  # unknown project
        recorded(8, proposed("C")),
        recorded(
            9,
            p.ProjectEstimateUpdated(
                project_id="C",
                capex=Decimal("1.00"),
                opex=Decimal("2.00"),
                planned_start=date(2026, 5, 1),
                planned_end=date(2027, 1, 31),
                reason="re-quoted",
            ),
        ),
        recorded(10, p.ProjectSubmittedForReview(project_id="B")),
    ],
]


def run(projection: Projection, conn: Connection, batch: list[RecordedEvent]) -> list[str]:
    """What the runner does with a batch: apply each event, note the refused, flush."""
    refused = []
    for event in batch:
        try:
            projection.apply(conn, event)
        except CannotApply as error:
            refused.append(f"{event.position}: {error}")
    projection.flush(conn)
    return refused


def rows(conn: Connection, projection: Any) -> list[tuple[Any, ...]]:
    table = projection.projects
    return [tuple(r) for r in conn.execute(select(table).order_by(table.c.project_id))]


def test_the_same_rows_and_refusals_as_the_per_event_fold() -> None:
    engine = create_engine("sqlite://")
    intake, reference = IntakeProjection(), ProjectsProjection("reference")
    with engine.begin() as conn:
        for projection in (intake, reference):
            projection.metadata.create_all(conn)
            projection.load(conn)
    for batch in BATCHES:
        with engine.begin() as conn:
            assert run(intake, conn, batch) == run(reference, conn, batch)
    with engine.connect() as conn:
        found = rows(conn, intake)
        assert found == rows(conn, reference)
    assert [(r[0], r[4], r[-2], r[-1]) for r in found] == [
        ("A", "approved", 3, 5),
        ("B", "under_review", 2, 10),
        ("C", "proposed", 2, 9),
    ]


def test_a_batch_rolled_back_is_forgotten() -> None:
    engine = create_engine("sqlite://")
    intake = IntakeProjection()
    with engine.begin() as conn:
        intake.metadata.create_all(conn)
        intake.load(conn)
    conn = engine.connect()
    transaction = conn.begin()
    assert run(intake, conn, BATCHES[0]) == ["4: project A was already proposed"]
    transaction.rollback()  # as when a batch fails: the runner discards and reloads
    conn.close()
    intake.discard()
    with engine.connect() as conn:
        intake.load(conn)
    with engine.begin() as conn:  # applied again from the start: nothing refused twice
        assert run(intake, conn, BATCHES[0]) == ["4: project A was already proposed"]
    with engine.connect() as conn:
        assert [r[0] for r in rows(conn, intake)] == ["A", "B"]


def first_event(position: int, command_id: str, project_id: str) -> RecordedEvent:
    """A command's first event as intake writes it (its id derives from the command id)."""
    event = recorded(position, proposed(project_id))
    envelope = event.envelope.model_copy(
        update={"event_id": first_event_id(command_id), "causation_id": command_id}
    )
    return RecordedEvent(position=position, envelope=envelope)


def test_a_command_id_keeps_its_first_position() -> None:
    engine = create_engine("sqlite://")
    intake = IntakeProjection()
    with engine.begin() as conn:
        intake.metadata.create_all(conn)
        intake.load(conn)
    batches = [
        [first_event(1, "cmd-1", "A"), first_event(2, "cmd-2", "B"), first_event(3, "cmd-1", "C")],
        [first_event(4, "cmd-2", "D"), first_event(5, "cmd-3", "E")],
    ]
    intake.command_ids.add("cmd-3", 5)  # as intake's own append does before the projection
    for batch in batches:
        with engine.begin() as conn:
            assert run(intake, conn, batch) == []
    with engine.connect() as conn:
        columns = intake.commands.c.command_id, intake.commands.c.position
        stored = {row[0]: row[1] for row in conn.execute(select(*columns))}
    assert stored == {"cmd-1": 1, "cmd-2": 2, "cmd-3": 5}
    fresh = IntakeProjection()  # a restart: the index is loaded from the table
    with engine.connect() as conn:
        fresh.load(conn)
    assert [fresh.command_ids.first_position(c) for c in ("cmd-1", "cmd-2", "cmd-3")] == [1, 2, 5]
