"""Continuous improvement: closure records (realised benefits, lessons learned) decided by
intake, and what the report makes of them (estimate accuracy, benefit realisation, EAC
convergence, lessons), given a fixed event sequence and figures computed by hand."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import ledger as lg
from contracts import projects as p
from contracts import risks as r
from contracts.base import ErrorCode, EventEnvelope, FrozenModel, RecordedEvent
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from domain.projects import ProjectState
from services.reporting import documents, improvement
from services.reporting.facts import EacPoint, month_end
from services.reporting.report import PortfolioReport, fold
from shared import render

Status = p.ProjectStatus
NOW = datetime(2028, 3, 1, 9, 0, tzinfo=UTC)
PID = "WIFI"


def proposed(pid: str = PID, **fields: Any) -> p.ProjectProposed:
    values: dict[str, Any] = {
        "project_id": pid,
        "name": f"Project {pid}",
        "description": "",
        "sponsor": "cio",
        "category": "infrastructure",
        "capex": Decimal("80000"),
        "opex": Decimal("20000"),
        "currency": "EUR",
        "planned_start": date(2027, 1, 1),
        "planned_end": date(2027, 4, 30),
        "mandatory": False,
        "dependencies": (),
        "expected_benefits": (
            p.YearlyBenefit(year=2027, amount=Decimal("30000")),
            p.YearlyBenefit(year=2028, amount=Decimal("60000")),
        ),
    }
    return p.ProjectProposed(**(values | fields))


def lifecycle(pid: str = PID, started: date = date(2027, 1, 1), **fields: Any) -> list[Any]:
    """Proposed, reviewed, approved and started: in progress."""
    return [
        proposed(pid, **fields),
        p.ProjectSubmittedForReview(project_id=pid),
        p.ProjectApproved(project_id=pid, rationale="good value"),
        p.ProjectStarted(project_id=pid, started_on=started),
    ]


def completed(pid: str = PID, on: date = date(2027, 5, 31), **fields: Any) -> list[Any]:
    return [*lifecycle(pid, **fields), p.ProjectCompleted(project_id=pid, completed_on=on)]


CANCELLED = [
    proposed(),
    p.ProjectCancelled(project_id=PID, reason="not needed", cancelled_from=Status.PROPOSED),
]


def given(*events: FrozenModel) -> ProjectState | None:
    state: ProjectState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def when(command: p.ProjectCommand, *history: FrozenModel) -> list[FrozenModel]:
    return decide(command, given(*history), NOW)


def refused(command: p.ProjectCommand, *history: FrozenModel) -> Rejected:
    with pytest.raises(Rejected) as caught:
        when(command, *history)
    return caught.value


def benefit(year: int = 2027, amount: str = "25000", **fields: Any) -> p.RecordRealisedBenefit:
    return p.RecordRealisedBenefit(project_id=PID, year=year, amount=Decimal(amount), **fields)


def lesson(**fields: Any) -> p.RecordLessonLearned:
    values = {"title": "Survey the sites first", "description": "Two floors had no cabling."}
    return p.RecordLessonLearned(project_id=PID, **(values | fields))


# --- realised benefits -------------------------------------------------------------------


def test_a_completed_project_records_a_realised_benefit() -> None:
    events = when(benefit(external_ref="FIN-1", description="fewer tickets"), *completed())
    assert events == [
        p.RealisedBenefitRecorded(
            project_id=PID,
            year=2027,
            amount=Decimal("25000"),
            external_ref="FIN-1",
            description="fewer tickets",
        )
    ]


@pytest.mark.parametrize("history", [lifecycle(), CANCELLED, [proposed()]], ids=str)
def test_benefits_only_after_completion(history: list[FrozenModel]) -> None:
    error = refused(benefit(), *history)
    assert error.code == ErrorCode.ILLEGAL_TRANSITION
    assert "allowed when completed" in error.message


def test_benefit_of_an_unknown_project_is_not_found() -> None:
    error = refused(benefit())
    assert error.code == ErrorCode.NOT_FOUND
    assert [d.field for d in error.details] == ["project_id"]


def test_a_year_twice_is_refused_unless_replaced_explicitly() -> None:
    history = [*completed(), *when(benefit(), *completed())]
    error = refused(benefit(amount="27000"), *history)
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert [d.field for d in error.details] == ["year"] and "replace" in error.message

    [replaced] = when(benefit(amount="27000", replace=True), *history)
    assert isinstance(replaced, p.RealisedBenefitRecorded)
    assert replaced.amount == Decimal("27000") and replaced.replaced_amount == Decimal("25000")
    state = given(*history, replaced)
    assert state is not None and state.realised == ((2027, Decimal("27000")),)


def test_replace_without_a_record_for_the_year_is_not_found() -> None:
    error = refused(benefit(replace=True), *completed())
    assert error.code == ErrorCode.NOT_FOUND and [d.field for d in error.details] == ["replace"]


def test_an_external_reference_twice_is_a_duplicate() -> None:
    history = [*completed(), *when(benefit(external_ref="FIN-1"), *completed())]
    error = refused(benefit(year=2028, external_ref="FIN-1"), *history)
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert [d.field for d in error.details] == ["external_ref"]


def test_no_benefit_before_the_project_started() -> None:
    error = refused(benefit(year=2026), *completed())
    assert error.code == ErrorCode.VALIDATION_FAILED and "started in 2027" in error.message


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": "-1"}, "amount"),
        ({"amount": "1.234"}, "amount"),
        ({"year": 1999}, "year"),
        ({"description": "x" * 501}, "description"),
        ({"external_ref": " "}, "external_ref"),
    ],
)
def test_bad_benefit_input_is_refused_by_the_contract(fields: dict[str, Any], field: str) -> None:
    data = {"project_id": PID, "year": 2027, "amount": "100"} | fields
    with pytest.raises(ValidationError) as caught:
        p.RecordRealisedBenefit.model_validate(data)
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


# --- lessons learned ---------------------------------------------------------------------


@pytest.mark.parametrize("history", [completed(), CANCELLED], ids=["completed", "cancelled"])
def test_a_closed_project_records_lessons_numbered_in_turn(history: list[FrozenModel]) -> None:
    [first] = when(lesson(category="planning"), *history)
    assert first == p.LessonLearnedRecorded(
        project_id=PID,
        lesson_id="L1",
        title="Survey the sites first",
        description="Two floors had no cabling.",
        category="planning",
    )
    [named] = when(lesson(lesson_id="L2"), *history, first)
    [third] = when(lesson(), *history, first, named)
    assert isinstance(third, p.LessonLearnedRecorded) and third.lesson_id == "L3"


@pytest.mark.parametrize("history", [lifecycle(), [proposed()]], ids=["in_progress", "proposed"])
def test_lessons_only_once_closed(history: list[FrozenModel]) -> None:
    error = refused(lesson(), *history)
    assert error.code == ErrorCode.ILLEGAL_TRANSITION
    assert "allowed when cancelled, completed" in error.message


def test_a_lesson_id_twice_is_refused() -> None:
    history = [*completed(), *when(lesson(lesson_id="VENDOR"), *completed())]
    error = refused(lesson(lesson_id="VENDOR"), *history)
    assert error.code == ErrorCode.ALREADY_EXISTS
    assert [d.field for d in error.details] == ["lesson_id"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "x" * 201}, "title"),
        ({"title": "  "}, "title"),
        ({"description": ""}, "description"),
        ({"description": "x" * 4001}, "description"),
        ({"recommendation": "x" * 4001}, "recommendation"),
        ({"lesson_id": "has space"}, "lesson_id"),
        ({"category": "x" * 129}, "category"),
    ],
)
def test_bad_lesson_input_is_refused_by_the_contract(fields: dict[str, Any], field: str) -> None:
    data = {"project_id": PID, "title": "t", "description": "d"} | fields
    with pytest.raises(ValidationError) as caught:
        p.RecordLessonLearned.model_validate(data)
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


# --- the report: a fixed history, figures computed by hand ---------------------------------


class Log:
    """Recorded events one hour apart, as intake and the services would write them."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []

    def add(self, aggregate: tuple[str, str], *events: FrozenModel, actor: str = "pmo") -> None:
        for event in events:
            position = len(self.events) + 1
            recorded = NOW + timedelta(hours=position)
            envelope = EventEnvelope(
                event_id=f"e-{position}",
                event_type=type(event).__name__,
                schema_version=1,
                aggregate_type=aggregate[0],
                aggregate_id=aggregate[1],
                actor=actor,
                source="tests",
                occurred_at=recorded,
                recorded_at=recorded,
                correlation_id=f"c-{position}",
                causation_id=f"c-{position}",
                payload=event.model_dump(mode="json"),
            )
            self.events.append(RecordedEvent(position=position, envelope=envelope))

    def project(self, pid: str, *events: FrozenModel, actor: str = "pmo") -> None:
        self.add((p.AGGREGATE, pid), *events, actor=actor)

    def actual(self, pid: str, period: str, amount: int) -> None:
        self.add(
            (lg.POOL, "P"),
            lg.ActualCostRecorded(
                pool_id="P",
                project_id=pid,
                amount=Decimal(amount),
                currency="EUR",
                external_ref=f"INV-{pid}-{period}",
                period=period,
                source="erp",
            ),
        )

    def progress(self, pid: str, period: str, percent: int, bac: int) -> None:
        event = r.ProgressReported(
            project_id=pid,
            period=period,
            percent_complete=Decimal(percent),
            earned_value=Decimal(bac * percent // 100),
            forecast_end=None,
            baseline_revision=1,
        )
        self.add((r.BASELINE, pid), event)


def history() -> Log:
    """WIFI: small, infrastructure; planned 100,000 over 120 days (Jan-Apr 2027), actual
    110,000 over 151 days, progress reported in Feb, Mar and May, a realised benefit
    replaced. HR: medium, application; planned 300,000 over 28 days, actual 270,000 over
    20. EDR: large, completed with no actual cost. CRM: in progress. OLD: cancelled."""
    log = Log()
    log.add(
        (lg.POOL, "P"),
        lg.BudgetPoolDefined(
            pool_id="P",
            name="IT 2027",
            fiscal_year=2027,
            quarter=None,
            category=lg.BudgetCategory.CAPEX,
            amount=Decimal(5_000_000),
            currency="EUR",
            owner="cfo",
            thresholds=(80, 100),
        ),
    )
    log.project(PID, *lifecycle())
    log.project(
        PID,
        p.ProjectEstimateUpdated(
            project_id=PID,
            capex=Decimal(100000),
            opex=Decimal(20000),
            planned_start=date(2027, 1, 1),
            planned_end=date(2027, 5, 31),
            reason="cabling",
        ),
    )
    baseline = r.ProjectBaselineSet(
        project_id=PID,
        revision=1,
        budget_at_completion=Decimal(100000),
        planned_value_by_period=tuple(
            r.PlannedValue(period=f"2027-0{m}", planned_value=Decimal(25000 * m))
            for m in range(1, 5)
        ),
        planned_end=date(2027, 4, 30),
    )
    log.add((r.BASELINE, PID), baseline)
    log.actual(PID, "2027-01", 30000)
    log.actual(PID, "2027-02", 30000)
    log.progress(PID, "2027-02", 40, 100000)
    log.actual(PID, "2027-03", 30000)
    log.progress(PID, "2027-03", 80, 100000)
    log.actual(PID, "2027-05", 20000)
    log.progress(PID, "2027-05", 100, 100000)
    log.project(PID, p.ProjectCompleted(project_id=PID, completed_on=date(2027, 5, 31)))
    for amount, replaced in ((25000, None), (27000, Decimal(25000))):
        log.project(
            PID,
            p.RealisedBenefitRecorded(
                project_id=PID, year=2027, amount=Decimal(amount), replaced_amount=replaced
            ),
        )
    log.project(
        PID,
        p.LessonLearnedRecorded(
            project_id=PID,
            lesson_id="L1",
            title="Survey the sites first",
            description="Two floors had no cabling.",
            recommendation="Budget a site survey.",
            category="planning",
        ),
        actor="wifi-lead",
    )
    log.project(
        "HR",
        *completed(
            "HR",
            on=date(2027, 2, 20),
            started=date(2027, 2, 1),
            category="application",
            sponsor="chro",
            capex=Decimal(300000),
            opex=Decimal(0),
            planned_start=date(2027, 2, 1),
            planned_end=date(2027, 2, 28),
            expected_benefits=(),
        ),
    )
    log.actual("HR", "2027-02", 270000)
    log.project(
        "EDR",
        *completed(
            "EDR",
            on=date(2027, 1, 31),
            sponsor="ciso",
            capex=Decimal(1_500_000),
            opex=Decimal(0),
            planned_start=date(2027, 1, 1),
            planned_end=date(2027, 1, 31),
        ),
    )
    log.project("CRM", *lifecycle("CRM"))
    log.actual("CRM", "2027-01", 5000)
    log.project(
        "OLD",
        proposed("OLD", name="Old ERP add-on"),
        p.ProjectCancelled(project_id="OLD", reason="vendor gone", cancelled_from=Status.PROPOSED),
        p.LessonLearnedRecorded(
            project_id="OLD",
            lesson_id="L1",
            title="Check the vendor's health",
            description="The vendor went bankrupt during the tender.",
            category="Vendor",
        ),
    )
    return log


@pytest.fixture(scope="module")
def report() -> PortfolioReport:
    return fold(history().events)


def test_nothing_is_skipped(report: PortfolioReport) -> None:
    assert report.skipped == 0, report.skipped_reasons


def test_estimate_accuracy_per_project(report: PortfolioReport) -> None:
    accuracy = improvement.figures(report)["estimate_accuracy"]
    rows = {x["project_id"]: x for x in accuracy["projects"]}
    assert set(rows) == {"EDR", "HR", PID}
    wifi = rows[PID]
    assert wifi["size"] == "small" and wifi["category"] == "infrastructure"
    assert (wifi["planned_cost"], wifi["latest_estimate"], wifi["actual_cost"]) == (
        "100000.00",
        "120000.00",
        "110000.00",
    )
    assert (wifi["cost_variance"], wifi["cost_variance_percent"]) == ("10000.00", "10.0")
    assert (wifi["planned_days"], wifi["actual_days"], wifi["duration_variance_days"]) == (
        120,
        151,
        31,
    )
    assert wifi["duration_variance_percent"] == "25.8"  # 31 / 120
    hr = rows["HR"]
    assert (hr["size"], hr["cost_variance_percent"], hr["duration_variance_percent"]) == (
        "medium",
        "-10.0",
        "-28.6",  # -8 / 28
    )
    edr = rows["EDR"]
    assert edr["size"] == "large" and edr["actual_cost"] is None
    assert edr["cost_variance_percent"] is None and edr["duration_variance_days"] == 0
    assert accuracy["without_actuals"] == ["EDR"]


def test_estimate_accuracy_grouped(report: PortfolioReport) -> None:
    accuracy = improvement.figures(report)["estimate_accuracy"]
    [total] = accuracy["totals"]
    assert total == {
        "currency": "EUR",
        "projects": 3,
        "with_actuals": 2,
        "planned_cost": "400000.00",
        "actual_cost": "380000.00",
        "cost_variance_percent": "-5.0",
        "mean_abs_cost_error_percent": "10.0",
        "on_budget": 2,
        "planned_days": 179,
        "actual_days": 202,
        "duration_variance_percent": "12.8",  # 23 / 179
        "mean_abs_duration_error_percent": "18.1",  # (25.8 + 28.6 + 0) / 3
        "on_time": 2,
    }
    infra = next(x for x in accuracy["by_category"] if x["category"] == "infrastructure")
    assert (infra["projects"], infra["with_actuals"], infra["cost_variance_percent"]) == (
        2,
        1,
        "10.0",
    )
    assert (infra["planned_days"], infra["actual_days"]) == (151, 182)
    assert infra["duration_variance_percent"] == "20.5"  # 31 / 151
    assert infra["mean_abs_duration_error_percent"] == "12.9"  # (25.8 + 0) / 2
    assert [x["sponsor"] for x in accuracy["by_sponsor"]] == ["chro", "cio", "ciso"]
    assert [(x["size"], x["projects"]) for x in accuracy["by_size"]] == [
        ("large", 1),
        ("medium", 1),
        ("small", 1),
    ]


def test_benefit_realisation(report: PortfolioReport) -> None:
    benefits = improvement.figures(report)["benefits"]
    rows = {x["project_id"]: x for x in benefits["projects"]}
    assert set(rows) == {"EDR", "HR", PID}
    wifi = rows[PID]
    assert wifi["years"] == [
        {"year": 2027, "expected": "30000.00", "realised": "27000.00"},  # the replacement
        {"year": 2028, "expected": "60000.00", "realised": None},
    ]
    assert (wifi["expected_total"], wifi["expected_to_date"], wifi["realised_total"]) == (
        "90000.00",
        "30000.00",
        "27000.00",
    )
    assert wifi["realisation_percent"] == "90.0"
    assert rows["HR"]["realisation_percent"] is None
    assert benefits["awaiting"] == ["EDR", "HR"]
    assert benefits["totals"] == [
        {
            "currency": "EUR",
            "expected_to_date": "30000.00",
            "expected_total": "180000.00",
            "realised_total": "27000.00",
            "realisation_percent": "90.0",
        }
    ]


def test_eac_convergence(report: PortfolioReport) -> None:
    convergence = improvement.figures(report)["eac_convergence"]
    [wifi] = convergence["projects"]
    assert wifi["final_cost"] == "110000.00"
    # EAC = BAC x AC / EV with AC of the months up to the one reported.
    assert [(x["period"], x["ac"], x["ev"], x["eac"]) for x in wifi["series"]] == [
        ("2027-02", "60000.00", "40000.00", "150000.00"),
        ("2027-03", "90000.00", "80000.00", "112500.00"),
        ("2027-05", "110000.00", "100000.00", "110000.00"),
    ]
    # Life: 2027-01-01 to 2027-05-31 (150 days); 25% = Feb 7 (no report yet), 50% = Mar 17
    # (the February EAC stands), 75% = Apr 23 (the March EAC stands).
    assert [(e["date"], e["period"], e["error_percent"]) for e in wifi["errors"]] == [
        ("2027-02-07", None, None),
        ("2027-03-17", "2027-02", "36.4"),
        ("2027-04-23", "2027-03", "2.3"),
    ]
    assert convergence["summary"] == [
        {"life_percent": 25, "projects": 0, "mean_abs_error_percent": None},
        {"life_percent": 50, "projects": 1, "mean_abs_error_percent": "36.4"},
        {"life_percent": 75, "projects": 1, "mean_abs_error_percent": "2.3"},
    ]


def test_lessons_are_listed_and_searchable(report: PortfolioReport) -> None:
    lessons = improvement.figures(report)["lessons"]
    assert lessons["total"] == 2 and lessons["by_category"] == {"Vendor": 1, "planning": 1}
    assert [x["project_id"] for x in lessons["items"]] == ["OLD", PID]  # latest first

    def lessons_found(*words: str, **where: Any) -> list[dict[str, Any]]:
        return improvement.find_lessons(report, words, **where)

    assert [x["project_id"] for x in lessons_found("VENDOR")] == ["OLD"]
    assert [x["lesson_id"] for x in lessons_found("sites", "cabling")] == ["L1"]
    assert lessons_found("sites", "bankrupt") == []
    assert [x["project_id"] for x in lessons_found("erp")] == ["OLD"]  # project name
    assert [x["project_id"] for x in lessons_found(category="vendor")] == ["OLD"]
    assert [x["project_id"] for x in lessons_found(project_id=PID)] == [PID]
    [found] = improvement.find_lessons(report, project_id=PID)
    assert found["actor"] == "wifi-lead" and found["project_status"] == "completed"
    assert found["recommendation"] == "Budget a site survey."


def test_the_reports_carry_the_figures(report: PortfolioReport) -> None:
    full = documents.portfolio(report, NOW)
    assert full["improvement"] == improvement.figures(report)
    card = documents.scorecard(report, PID, NOW)["improvement"]
    assert [x["project_id"] for x in card["estimate_accuracy"]["projects"]] == [PID]
    assert card["lessons"]["total"] == 1
    crm = documents.scorecard(report, "CRM", NOW)["improvement"]
    assert crm["estimate_accuracy"]["projects"] == [] and crm["benefits"]["projects"] == []


def test_the_fold_pickles(report: PortfolioReport) -> None:
    """Snapshots pickle the fold: its state is plain data."""
    import pickle

    again = pickle.loads(pickle.dumps(report))
    assert improvement.figures(again) == improvement.figures(report)


def test_every_format_shows_the_sections(report: PortfolioReport) -> None:
    for built in (documents.portfolio(report, NOW), documents.scorecard(report, PID, NOW)):
        names = {s.name for s in render.sections(built)}
        assert {"accuracy", "benefits", "eac_convergence", "eac_series", "lessons"} <= names
        rows = list(csv.reader(io.StringIO(render.render(built, "csv"))))
        lessons = [row for row in rows if row and row[0] == "lessons"]
        assert lessons[-1][:5] == ["lessons", PID, "L1", "planning", "Survey the sites first"]
        assert "## Estimate accuracy" in render.render(built, "md")
        assert "Benefit realisation" in render.render(built, "table", width=250)
        page = render.render(built, "html")
        assert '<svg id="estimate-accuracy"' in page and '<svg id="eac-convergence"' in page
        assert "<polyline" in page and "<script" not in page
    groups = next(
        s
        for s in render.sections(documents.portfolio(report, NOW))
        if s.name == "accuracy_by_group"
    )
    assert groups.rows[-1][:5] == ["total", "all", "EUR", 3, 2]


def test_a_months_invoices_may_arrive_after_its_progress_report(report: PortfolioReport) -> None:
    events = history().events
    types = [e.envelope.event_type for e in events]
    invoice = next(i for i, e in enumerate(events) if e.envelope.payload.get("period") == "2027-02")
    progress = types.index("ProgressReported")
    assert invoice < progress
    events[invoice], events[progress] = events[progress], events[invoice]
    swapped = improvement.figures(fold(events))["eac_convergence"]
    assert swapped == improvement.figures(report)["eac_convergence"]


def test_the_scorecards_history_names_the_closure_records() -> None:
    card = documents.scorecard(fold(history().events, focus=PID), PID, NOW)
    what = [h["what"] for h in card["audit"]]
    assert "realised benefit 2027: 27000 (replacing 25000)" in what
    assert "lesson L1 (planning): Survey the sites first" in what


def test_the_eac_series_of_the_rows_listed_and_every_projects_errors_in_the_summary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the first rows are listed, so only they carry a series; the summary is of
    every project's errors. The oracle builds every row in full."""
    from bench.biglog import BigLog
    from contracts.base import RecordedEvent
    from services.reporting import improvement
    from services.reporting.report import PortfolioReport

    envelopes = BigLog(6000, seed=11, recorded_at=datetime(2026, 1, 5, tzinfo=UTC)).events()
    report = PortfolioReport().apply_all(
        RecordedEvent(position=n, envelope=e) for n, e in enumerate(envelopes, start=1)
    )
    limit = 3
    monkeypatch.setattr(improvement, "LIST_LIMIT", limit)
    actuals = report.actual_cost_by_period()
    full = [
        improvement.convergence_row(
            facts,
            report.eac_points[pid],
            actuals.get(pid, {}),
            limit,
        )
        for pid, facts in sorted(report.projects.items())
        if pid in report.eac_points
    ]
    assert len(full) > limit and all(row["series"] for row in full)
    assert any(row["errors"] for row in full[limit:])  # the summary needs the rest
    found = improvement.figures(report)["eac_convergence"]
    assert found == improvement.eac_convergence(full, limit)


@hypothesis.given(st.integers(1, 9998), st.integers(1, 12))
def test_a_point_stands_as_of_the_last_day_of_its_month(year: int, month: int) -> None:
    following = date(year + month // 12, month % 12 + 1, 1)
    point = EacPoint(f"{year:04d}-{month:02d}", 1, Decimal(50), Decimal(100), Decimal(50))
    assert point.as_of == following - timedelta(days=1)
    assert month_end(point.period) == point.as_of
