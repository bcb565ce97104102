"""The report keeps sums and counts, not the references of every invoice and timesheet
(telling duplicates apart is the ledger's job): its state and snapshots do not grow with
every invoice ever booked."""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bench.biglog import BigLog
from contracts import ledger as lg
from contracts import projects as p
from contracts.base import EventEnvelope, FrozenModel, RecordedEvent
from contracts.registry import payload_of
from domain.ledger import capacity, periods
from domain.projects import ProjectProfile, evolve_profile, profile_from
from domain.risk import baselines
from services.reporting import documents
from services.reporting import report as report_module
from services.reporting.report import fold

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def recorded(position: int, aggregate: tuple[str, str], event: FrozenModel) -> RecordedEvent:
    at = T0 + timedelta(minutes=position)
    envelope = EventEnvelope(
        event_id=f"e-{position}",
        event_type=type(event).__name__,
        schema_version=1,
        aggregate_type=aggregate[0],
        aggregate_id=aggregate[1],
        actor="pmo",
        source="tests",
        occurred_at=at,
        recorded_at=at,
        correlation_id=f"c-{position}",
        causation_id=f"c-{position}",
        payload=event.model_dump(mode="json"),
    )
    return RecordedEvent(position=position, envelope=envelope)


def history(invoices: int) -> list[RecordedEvent]:
    pool = lg.BudgetPoolDefined(
        pool_id="OPEX-27",
        name="IT opex 2027",
        fiscal_year=2027,
        quarter=None,
        category=lg.BudgetCategory.OPEX,
        amount=Decimal(10_000_000),
        currency="EUR",
        owner="cfo",
        thresholds=(80, 100),
    )
    capacity = lg.CapacitySet(
        role="architect",
        period="2027-01",
        amount=Decimal(160),
        unit=lg.CapacityUnit.HOURS,
        time_off=Decimal(0),
    )
    events = [recorded(1, (lg.POOL, "OPEX-27"), pool)]
    events.append(recorded(2, (lg.CAPACITY, "architect"), capacity))
    for n in range(invoices):
        project, month = f"P{n % 3}", f"2027-{n % 12 + 1:02d}"
        cost = lg.ActualCostRecorded(
            pool_id="OPEX-27",
            project_id=project,
            amount=Decimal(100),
            currency="EUR",
            external_ref=f"INV-{n}",
            period=month,
            source="erp",
        )
        hours = lg.ActualHoursRecorded(
            role="architect",
            project_id=project,
            period=month,
            hours=Decimal(8),
            external_ref=f"TS-{n}",
        )
        events.append(recorded(len(events) + 1, (lg.POOL, "OPEX-27"), cost))
        events.append(recorded(len(events) + 1, (lg.CAPACITY, "architect"), hours))
    return events


def test_the_report_keeps_the_sums_of_invoices_and_timesheets_not_their_references() -> None:
    report = fold(history(600))
    pool, role = report.pools["OPEX-27"], report.roles["architect"]
    assert len(pool.actual_refs) == 0 and len(role.hours_refs) == 0
    assert pool.actual == Decimal(60_000)
    assert pool.actual_by_project["P0"] == Decimal(20_000)
    assert pool.actual_cells[("P1", "2027-02")] == Decimal(5_000)
    assert role.hours_total == Decimal(4_800)
    assert report.actual_cost["P2"] == Decimal(20_000)


def test_the_reports_state_does_not_grow_with_every_invoice() -> None:
    def size(invoices: int) -> int:
        report = fold(history(invoices))
        return len(pickle.dumps((report.pools, report.roles)))

    # Ten times the invoices over the same 3 projects x 12 months: the sums only (their
    # persistent maps may hold a few superseded values per level), not 10x the references.
    assert size(6_000) < size(600) * 2


# --- values held once ------------------------------------------------------------------------


def generated(events: int) -> list[RecordedEvent]:
    envelopes = BigLog(events, seed=11, recorded_at=T0).events()
    return [RecordedEvent(position=n, envelope=e) for n, e in enumerate(envelopes, 1)]


@pytest.fixture(scope="module")
def big() -> list[RecordedEvent]:
    return generated(30_000)


def test_a_reports_equal_amounts_and_cell_keys_are_held_once(big: list[RecordedEvent]) -> None:
    report = fold(big)
    amounts: dict[str, set[int]] = defaultdict(set)
    cells: dict[tuple[str, str], set[int]] = defaultdict(set)
    for role in report.roles.values():
        for cell, value in [*role.demand.items(), *role.hours.items()]:
            amounts[str(value)].add(id(value))
            cells[cell].add(id(cell))
    for pool in report.pools.values():
        for cell in pool.actual_cells:
            cells[cell].add(id(cell))
    for points in report.eac_points.values():
        for point in points:
            amounts[str(point.percent_complete)].add(id(point.percent_complete))
    assert len(amounts) > 50 and len(cells) > 500  # the generated log has them to share
    assert all(len(ids) == 1 for ids in amounts.values())
    assert all(len(ids) == 1 for ids in cells.values())


def test_a_projects_profile_is_the_views_and_what_its_events_fold_to(
    big: list[RecordedEvent],
) -> None:
    report = fold(big)
    # The oracle: each project's profile folded alone from its own events.
    expected: dict[str, ProjectProfile] = {}
    for event in big:
        e = event.envelope
        if e.aggregate_type != p.AGGREGATE:
            continue
        payload = payload_of(e)
        if isinstance(payload, p.ProjectProposed):
            expected[e.aggregate_id] = profile_from(payload)
        else:
            expected[e.aggregate_id] = evolve_profile(expected[e.aggregate_id], payload)
    assert len(expected) > 20
    assert {k: f.profile for k, f in report.projects.items()} == expected
    for project_id, facts in report.projects.items():
        assert facts.profile is report.view.candidates[project_id]  # held once, not twice


def test_sharing_changes_no_figure_of_the_report(
    big: list[RecordedEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2027, 6, 1, tzinfo=UTC)
    shared = documents.portfolio(fold(big), now)
    for module in (capacity, baselines, report_module):
        monkeypatch.setattr(module, "shared_amount", lambda value: value)
    monkeypatch.setattr(periods, "shared_pair", lambda first, second: (first, second))
    monkeypatch.setattr(report_module.PortfolioReport, "_shared_profile", lambda *_: None)
    assert json.dumps(documents.portfolio(fold(big), now)) == json.dumps(shared)


def test_a_projects_actual_cost_by_month_is_what_its_invoices_add_up_to(
    big: list[RecordedEvent],
) -> None:
    report = fold(big)
    expected: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for event in big:
        payload = payload_of(event.envelope)
        if isinstance(payload, lg.ActualCostRecorded):
            expected[payload.project_id][payload.period] += payload.amount

    def text(found: dict[str, dict[str, Decimal]]) -> dict[str, dict[str, str]]:
        return {k: {m: str(v) for m, v in sorted(by.items())} for k, by in found.items()}

    assert len(expected) > 20
    assert text(report.actual_cost_by_period()) == text(expected)
    one = sorted(expected)[len(expected) // 2]
    assert text(report.actual_cost_by_period(one)) == text({one: expected[one]})
