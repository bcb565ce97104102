"""The portfolio report against figures computed by hand from a fixed event sequence."""

from __future__ import annotations

import ast
import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from contracts import ledger as lg
from contracts import objectives as o
from contracts import prioritization as pr
from contracts import projects as p
from contracts import risks as r
from contracts.base import EventEnvelope, FrozenModel, RecordedEvent
from contracts.reports import PortfolioReportPublished
from services.reporting import documents, snapshots, timetravel
from services.reporting.diff import changes, diff_report, transitions
from services.reporting.facts import Cut, UnknownProject
from services.reporting.report import fold as fold_events
from shared import formatting, render, times

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


class Log:
    """Builds recorded events one hour apart, as intake and the services would write them."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []

    def add(
        self,
        aggregate: tuple[str, str],
        event: FrozenModel,
        occurred_at: datetime | None = None,
        actor: str = "pmo",
    ) -> RecordedEvent:
        position = len(self.events) + 1
        recorded = T0 + timedelta(hours=position)
        envelope = EventEnvelope(
            event_id=f"e-{position}",
            event_type=type(event).__name__,
            schema_version=1,
            aggregate_type=aggregate[0],
            aggregate_id=aggregate[1],
            actor=actor,
            source="tests",
            occurred_at=occurred_at or recorded,
            recorded_at=recorded,
            correlation_id=f"c-{position}",
            causation_id=f"c-{position}",
            payload=event.model_dump(mode="json"),
        )
        found = RecordedEvent(position=position, envelope=envelope)
        self.events.append(found)
        return found

    def at(self, position: int) -> datetime:
        return self.events[position - 1].envelope.recorded_at


def objective(oid: str, weight: int) -> o.ObjectiveDefined:
    return o.ObjectiveDefined(
        objective_id=oid, name=f"Objective {oid}", description="", owner="ceo", weight=weight
    )


def proposed(pid: str, capex: int, opex: int, objectives: dict[str, int], **extra: Any) -> Any:
    return p.ProjectProposed(
        project_id=pid,
        name=f"Project {pid}",
        description="",
        sponsor="cio",
        category=extra.pop("category", "infrastructure"),
        capex=Decimal(capex),
        opex=Decimal(opex),
        currency="EUR",
        planned_start=date(2027, 1, 1),
        planned_end=date(2027, 12, 31),
        mandatory=False,
        dependencies=(),
        objectives=tuple(
            p.ObjectiveContribution(objective_id=k, contribution=v) for k, v in objectives.items()
        ),
        **extra,
    )


def project(pid: str) -> tuple[str, str]:
    return (p.AGGREGATE, pid)


POOL = (lg.POOL, "CAPEX-27")


def build() -> Log:
    """The fixed sequence; the figures in the tests below are computed from it by hand."""
    log = Log()
    log.add((o.AGGREGATE, "OBJ-A"), objective("OBJ-A", 60))
    log.add((o.AGGREGATE, "OBJ-B"), objective("OBJ-B", 40))
    log.add((o.AGGREGATE, "OBJ-C"), objective("OBJ-C", 10))
    benefits = (p.YearlyBenefit(year=2028, amount=Decimal(200000)),)
    scoring = p.ScoringInputs(business_value=8, job_size=5, risk=2, urgency=4)
    log.add(
        project("P1"),
        proposed("P1", 100000, 20000, {"OBJ-A": 3, "OBJ-B": 1}, expected_benefits=benefits,
                 scoring=scoring),
    )  # fmt: skip
    log.add(project("P2"), proposed("P2", 50000, 10000, {"OBJ-A": 2}))  # 5
    log.add(project("P3"), proposed("P3", 70000, 0, {"OBJ-B": 5}))
    log.add(project("P1"), p.ProjectSubmittedForReview(project_id="P1"))
    log.add(project("P1"), p.ProjectApproved(project_id="P1", rationale="strategy 2027"))
    log.add(project("P3"), p.ProjectSubmittedForReview(project_id="P3"))
    log.add(project("P3"), p.ProjectRejected(project_id="P3", rationale="no business case"))  # 10
    published_at = log.add(
        (lg.POOL, "CAPEX-27"),
        lg.BudgetPoolDefined(
            pool_id="CAPEX-27",
            name="IT capex 2027",
            fiscal_year=2027,
            quarter=None,
            category=lg.BudgetCategory.CAPEX,
            amount=Decimal(1000000),
            currency="EUR",
            owner="cfo",
            thresholds=(80, 100),
        ),
    )
    del published_at
    log.add(
        POOL,
        lg.BudgetAllocated(
            pool_id="CAPEX-27",
            project_id="P1",
            amount=Decimal(300000),
            currency="EUR",
            rationale="tranche 1",
            allocation_id="A-1",
        ),
    )
    # 13: what stakeholders were told at this point
    log.add(
        ("report", "portfolio"),
        PortfolioReportPublished(
            report_id="R-1",
            position=12,
            content_position=12,
            generated_at=T0 + timedelta(hours=13),
            rationale="monthly board pack",
            summary=fold_events(log.events).summary(),
        ),
    )
    log.add(project("P1"), p.ProjectStarted(project_id="P1", started_on=date(2027, 1, 11)))
    log.add(
        POOL,
        lg.CommitmentRecorded(
            pool_id="CAPEX-27",
            project_id="P1",
            amount=Decimal(100000),
            currency="EUR",
            external_ref="PO-1",
            period="2027-02",
        ),
    )  # 15
    log.add(POOL, actual("P1", 40000, "INV-1", "2027-02", "PO-1"))
    log.add(POOL, actual("P1", 10000, "INV-2", "2027-03", None))
    log.add(
        (r.RISK, "R1"),
        identified("R1", "P1", 4, 5, 100000),  # score 20, EMV 0.7 x 100,000 = 70,000
    )
    log.add((r.RISK, "R2"), identified("R2", "P1", 2, 3, 50000))  # 6, EMV 15,000
    log.add(
        (r.RISK, "R3"),
        identified("R3", None, 3, 3, 40000, kind=r.RiskKind.OPPORTUNITY),  # 9, EMV 20,000
    )  # 20
    log.add((r.RISK, "R4"), identified("R4", "P2", 5, 5, 10000))
    log.add((r.RISK, "R4"), r.RiskClosed(risk_id="R4", project_id="P2", rationale="went away"))
    log.add(
        (r.BASELINE, "P1"),
        r.ProjectBaselineSet(
            project_id="P1",
            revision=1,
            budget_at_completion=Decimal(120000),
            planned_value_by_period=(
                r.PlannedValue(period="2027-01", planned_value=Decimal(20000)),
                r.PlannedValue(period="2027-02", planned_value=Decimal(40000)),
                r.PlannedValue(period="2027-03", planned_value=Decimal(60000)),
            ),
            planned_end=date(2027, 12, 31),
        ),
    )
    log.add(
        (r.BASELINE, "P1"),
        r.ProgressReported(
            project_id="P1",
            period="2027-03",
            percent_complete=Decimal(40),
            earned_value=Decimal(48000),
            forecast_end=date(2028, 1, 10),
            baseline_revision=1,
        ),
    )
    log.add(
        (lg.CAPACITY, "developer"),
        lg.CapacitySet(
            role="developer",
            period="2027-03",
            amount=Decimal(100),
            unit=lg.CapacityUnit.HOURS,
            time_off=Decimal(0),
        ),
    )  # 25
    log.add(
        (lg.CAPACITY, "developer"),
        lg.DemandAssigned(
            role="developer",
            project_id="P1",
            period="2027-03",
            amount=Decimal(120),
            previous_amount=Decimal(0),
            unit=lg.CapacityUnit.HOURS,
        ),
    )
    log.add(
        (pr.RANKING, "default"),
        pr.RankingDecided(
            model_id="default",
            model_version=0,
            method=pr.ScoringMethod.WEIGHTED,
            weights={"value": 1.0},
            computed_at_position=26,
            candidates=("P1", "P2"),
            ranking=(
                pr.RankedProject(
                    project_id="P2", rank=1, score=0.8, breakdown={"value": 0.8}, previous_rank=None
                ),
                pr.RankedProject(
                    project_id="P1", rank=2, score=0.5, breakdown={"value": 0.5}, previous_rank=None
                ),
            ),
        ),
    )
    log.add((r.ALERT, "al-1"), raised("al-1", "P1", r.Severity.CRITICAL))
    log.add((r.ALERT, "al-2"), raised("al-2", "P2", r.Severity.WARNING))
    log.add(
        (r.ALERT, "al-2"),
        r.AlertCleared(
            alert_id="al-2",
            rule_id="spi",
            metric=r.Metric.SPI,
            severity=r.Severity.WARNING,
            subject_id="P2",
            project_id="P2",
            value=1.0,
            clear_at=0.95,
        ),
    )  # 30
    # A late-arriving fact: a proposal that happened (business time) long before.
    log.add(
        project("P4"),
        proposed("P4", 10000, 0, {"OBJ-C": 1}),
        occurred_at=datetime(2026, 6, 1, tzinfo=UTC),
    )
    return log


def actual(pid: str, amount: int, ref: str, period: str, po: str | None) -> lg.ActualCostRecorded:
    return lg.ActualCostRecorded(
        pool_id="CAPEX-27",
        project_id=pid,
        amount=Decimal(amount),
        currency="EUR",
        external_ref=ref,
        period=period,
        source="erp",
        commitment_ref=po,
    )


def identified(
    rid: str,
    pid: str | None,
    probability: int,
    impact: int,
    monetary: int,
    kind: r.RiskKind = r.RiskKind.THREAT,
) -> r.RiskIdentified:
    return r.RiskIdentified(
        risk_id=rid,
        project_id=pid,
        title=f"Risk {rid}",
        description="",
        kind=kind,
        category="delivery",
        owner="pmo",
        probability=probability,
        impact=impact,
        monetary_impact=Decimal(monetary),
        proximity=None,
        score=probability * impact,
    )


def raised(aid: str, pid: str, severity: r.Severity) -> r.AlertRaised:
    return r.AlertRaised(
        alert_id=aid,
        rule_id="spi",
        metric=r.Metric.SPI,
        comparison=r.Comparison.LT,
        severity=severity,
        scope=r.Scope.PORTFOLIO,
        subject_id=pid,
        project_id=pid,
        value=0.8,
        threshold=0.9,
        clear_at=0.95,
        audit_link=f"portfolio audit --project {pid}",
        message=f"SPI of {pid} below 0.9",
    )


@pytest.fixture(scope="module")
def log() -> Log:
    return build()


@pytest.fixture(scope="module")
def report(log: Log) -> dict[str, Any]:
    return documents.portfolio(fold_events(log.events), NOW)


def test_projects_by_status_and_stage(report: dict[str, Any]) -> None:
    projects = report["projects"]
    assert projects["total"] == 4
    assert {k: v for k, v in projects["by_status"].items() if v} == {
        "proposed": 2,  # P2, P4
        "in_progress": 1,  # P1
        "rejected": 1,  # P3
    }
    assert projects["by_stage"] == {"pipeline": 2, "approved": 0, "delivery": 1, "closed": 1}


def test_budget_per_pool(report: dict[str, Any]) -> None:
    (pool,) = report["budget"]["pools"]
    # allocated 300,000; committed PO-1 100,000, of which 40,000 invoiced against it;
    # actual 40,000 + 10,000; forecast = actual + open commitments = 50,000 + 60,000.
    assert {k: pool[k] for k in ("amount", "allocated", "unallocated", "committed")} == {
        "amount": "1000000.00",
        "allocated": "300000.00",
        "unallocated": "700000.00",
        "committed": "100000.00",
    }
    assert pool["open_commitments"] == "60000.00"
    assert pool["actual"] == "50000.00"
    assert pool["forecast_at_completion"] == "110000.00"
    assert pool["remaining"] == "190000.00"
    assert pool["consumption_percent"] == "11.00"  # 110,000 / 1,000,000
    assert pool["actual_by_period"] == {"2027-02": "40000.00", "2027-03": "10000.00"}
    assert report["budget"]["totals"][0]["remaining"] == "190000.00"


def test_strategic_coverage(report: dict[str, Any]) -> None:
    rows = {row["objective_id"]: row for row in report["coverage"]["objectives"]}
    # Live: P1 (in progress, 120,000, A:3 B:1, benefits 200,000), P2 (proposed, 60,000, A:2),
    # P4 (proposed, 10,000, C:1). P3 is rejected.
    a, b, c = rows["OBJ-A"], rows["OBJ-B"], rows["OBJ-C"]
    assert (a["budget"], a["funded_budget"]) == ("150000.00", "90000.00")  # 3/4*120k + 60k
    assert (a["value"], a["funded_value"]) == ("150000.00", "150000.00")  # 3/4 * 200k
    assert (a["projects"], a["funded_projects"], a["contribution_points"]) == (2, 1, 5)
    assert (b["budget"], b["value"], b["funded_projects"]) == ("30000.00", "50000.00", 1)
    assert (c["budget"], c["funded_budget"], c["projects"]) == ("10000.00", "0.00", 1)
    assert report["coverage"]["unfunded"] == ["OBJ-C"]
    assert report["coverage"]["value"]["EUR"]["planned_value"] == "200000.00"


def test_risk_exposure_and_heat_map(report: dict[str, Any]) -> None:
    risks = report["risks"]
    assert (risks["open"], risks["closed"], risks["open_threats"]) == (3, 1, 2)
    assert risks["contingency_reserve"] == "85000.00"  # 70,000 + 15,000 (threats only)
    assert risks["opportunities_emv"] == "20000.00"
    heat = risks["heat_map"]
    assert heat[3][4] == 1 and heat[1][2] == 1 and heat[2][2] == 1  # (4,5) (2,3) (3,3)
    assert sum(map(sum, heat)) == 3  # R4 is closed
    assert [x["risk_id"] for x in risks["top"]] == ["R1", "R3", "R2"]
    assert risks["by_zone"] == {"low": 0, "medium": 2, "high": 1}


def test_health_from_earned_value(report: dict[str, Any]) -> None:
    (row,) = report["health"]["projects"]
    # BAC 120,000; PV(2027-03) 60,000; EV 40% = 48,000; AC 50,000.
    ev = row["earned_value"]
    assert ev["ev"] == "48000.00" and ev["ac"] == "50000.00"
    assert ev["cpi"] == "0.9600" and ev["spi"] == "0.8000"
    # Every figure, under the risk monitor's names: EAC = BAC / CPI = 125,000.
    assert list(ev) == list(formatting.EARNED_VALUE)
    assert ev["eac_typical"] == "125000.00" and ev["eac_atypical"] == "122000.00"
    assert ev["etc"] == "75000.00" and ev["vac"] == "-5000.00" and ev["tcpi"] == "1.0286"
    indicators = {i["name"]: i["status"] for i in row["indicators"]}
    assert indicators == {
        "cpi": "green",
        "spi": "red",
        "schedule_slip_days": "amber",  # 10 days late
        "risk_score": "red",  # R1 scores 20
    }
    assert row["status"] == "red"
    assert report["health"]["portfolio"]["status"] == "red"


def test_capacity_ranking_and_alerts(report: dict[str, Any]) -> None:
    (role,) = report["capacity"]["roles"]
    assert role["utilisation_percent"] == "120.00"
    assert role["over_allocated_months"] == ["2027-03"]
    ranking = report["ranking"]
    assert ranking["source"] == "decided"
    assert [(x["rank"], x["project_id"], x["score"]) for x in ranking["top"]] == [
        (1, "P2", 0.8),
        (2, "P1", 0.5),
    ]
    assert ranking["top"][1]["cost"] == "120000.00"
    alerts = report["alerts"]
    assert alerts["open"] == 1 and alerts["items"][0]["alert_id"] == "al-1"
    assert alerts["by_severity"]["critical"] == 1


def test_changes_since_the_published_report(report: dict[str, Any]) -> None:
    found = report["changes"]
    assert found["since"]["kind"] == "published" and found["since"]["report_id"] == "R-1"
    assert found["new_proposals"] == ["P4"]
    assert found["status_changes"] == [
        {"project_id": "P1", "from": "approved", "to": "in_progress"}
    ]
    assert found["approvals"] == []  # P1 was approved before the publication
    assert found["new_risks"] == ["R1", "R2", "R3"]
    assert found["alerts_raised"] == [
        {"alert_id": "al-1", "severity": "critical", "subject_id": "P1"}
    ]
    by_figure = {x["figure"]: x["delta"] for x in found["budget_changes"]}
    assert by_figure == {"committed": "100000.00", "actual": "50000.00", "remaining": "-110000.00"}
    assert found["counts"]["new_risks"] == 3


def test_without_a_publication_changes_count_from_the_start(log: Log) -> None:
    events = [e for e in log.events if e.envelope.event_type != "PortfolioReportPublished"]
    found = documents.portfolio(fold_events(events), NOW)["changes"]
    assert found["since"] == {"kind": "start"}
    assert found["new_proposals"] == ["P1", "P2", "P3", "P4"]
    assert found["approvals"] == ["P1"]


def test_as_of_folds_what_was_recorded_by_then(log: Log) -> None:
    cut = Cut(as_of=log.at(12))
    early = fold_events(log.events, cut)
    assert early.position == 12 and early.events == 12
    assert documents.portfolio(early, NOW) == documents.portfolio(
        fold_events(log.events[:12]), NOW
    ) | {"cut": early.cut_json()}
    report = documents.portfolio(early, NOW)
    assert report["projects"]["by_status"]["approved"] == 1
    assert report["risks"]["open"] == 0 and report["budget"]["pools"][0]["actual"] == "0.00"


def test_occurred_as_of_folds_by_business_time(log: Log) -> None:
    late = fold_events(log.events, Cut(occurred_as_of=datetime(2026, 12, 31, tzinfo=UTC)))
    assert late.events == 1 and set(late.projects) == {"P4"}
    # Both bounds: what had been recorded by position 30 about anything up to then.
    both = fold_events(log.events, Cut(as_of=log.at(30), occurred_as_of=log.at(31)))
    assert "P4" not in both.projects and both.events == 30


def test_a_cut_that_breaks_an_aggregate_skips_the_event_and_says_why(log: Log) -> None:
    # Cutting the pool's definition away leaves its allocation without a pool.
    events = [e for e in log.events if e.position != 11]
    found = fold_events(events)
    assert found.skipped >= 1 and "BudgetPoolDefined" in found.skipped_reasons[0]


def test_diff_between_two_points(log: Log) -> None:
    before = fold_events(log.events, Cut(as_of=log.at(10)))
    after = fold_events(log.events, Cut(as_of=log.at(22)))
    found = diff_report(before, after, NOW)
    assert found["kind"] == "diff"
    changed = found["changes"]
    assert changed["new_proposals"] == []
    assert changed["status_changes"] == [
        {"project_id": "P1", "from": "approved", "to": "in_progress"}
    ]
    assert changed["new_risks"] == ["R1", "R2", "R3"]  # R4 opened and closed in between
    assert {x["figure"] for x in changed["budget_changes"]} == {
        "amount",
        "allocated",
        "committed",
        "actual",
        "remaining",
    }
    assert found["totals"]["from"]["open_risks"] == 0 and found["totals"]["to"]["open_risks"] == 3


def test_a_diff_lists_every_status_step_in_between_not_only_the_net_change() -> None:
    """P9 goes proposed -> under review -> approved -> cancelled between the two points:
    the net change says proposed -> cancelled, the transitions every step, in order."""
    steps = Log()
    for event in (
        p.ProjectSubmittedForReview(project_id="P9"),
        p.ProjectApproved(project_id="P9", rationale="fits"),
        p.ProposalCommented(project_id="P9", stakeholder_id="cfo", comment="ok"),  # no step
        p.ProjectCancelled(project_id="P9", reason="superseded", cancelled_from="approved"),
    ):
        steps.add(("project", "P9"), event, actor="board")
    steps.add(("objective", "x"), o.ObjectiveRetired(objective_id="x", rationale="done"))
    found = transitions({"P9": "proposed"}, steps.events)
    assert [(x["from"], x["to"]) for x in found] == [
        ("proposed", "under_review"),
        ("under_review", "approved"),
        ("approved", "cancelled"),
    ]
    assert [x["position"] for x in found] == [1, 2, 4]
    assert {x["actor"] for x in found} == {"board"}
    # A project first seen in between starts from nothing.
    assert transitions({}, steps.events[:1])[0]["from"] is None


def test_changes_between_summaries_are_symmetric_in_what_they_name() -> None:
    old = {"projects": {"A": "proposed"}, "pools": {}, "risks": {"R": {"score": 4}}, "alerts": {}}
    new = {
        "projects": {"A": "approved", "B": "proposed"},
        "pools": {},
        "risks": {},
        "alerts": {"x": {"severity": "warning", "subject_id": "P9"}},
        "health": {},
        "ranking": [],
    }
    found = changes(old, new)
    assert found["approvals"] == ["A"] and found["closed_risks"] == ["R"]
    assert found["counts"]["alerts_raised"] == 1


def test_project_scorecard(log: Log) -> None:
    card = documents.scorecard(fold_events(log.events, focus="P1"), "P1", NOW)
    assert card["project"]["status"] == "in_progress"
    assert card["business_case"]["total_cost"] == "120000.00"
    assert card["business_case"]["benefits_total"] == "200000.00"
    assert card["ranking"]["rank"] == 2 and card["ranking"]["of"] == 2
    (pool,) = card["budget"]["pools"]
    assert pool["pool_id"] == "CAPEX-27" and pool["remaining"] == "190000.00"
    assert [x["risk_id"] for x in card["risks"]["items"]] == ["R1", "R2"]
    assert card["risks"]["contingency_reserve"] == "85000.00"
    assert card["health"]["status"] == "red"
    assert card["capacity"] == [
        {"role": "developer", "period": "2027-03", "demand": "120", "unit": "hours"}
    ]
    assert [a["alert_id"] for a in card["alerts"]] == ["al-1"]
    what = [h["what"] for h in card["audit"]]
    assert "ProjectApproved: strategy 2027" in what
    assert any(w.startswith("300000 EUR allocated in CAPEX-27") for w in what)
    assert "ranked #2 of 2, score 0.500" in what
    with pytest.raises(UnknownProject):
        documents.scorecard(fold_events(log.events), "NOPE", NOW)


def test_unknown_event_types_are_skipped_not_raised(log: Log) -> None:
    odd = log.events[0].model_copy(
        update={"envelope": log.events[0].envelope.model_copy(update={"event_type": "Nope"})}
    )
    found = fold_events([odd, *log.events[1:3]])
    assert found.skipped == 1 and found.events == 3 and "Nope" in found.skipped_reasons[0]


# --- rendering -------------------------------------------------------------------------


def test_every_format_renders_every_section(report: dict[str, Any], log: Log) -> None:
    for kind in (
        report,
        documents.scorecard(fold_events(log.events, focus="P1"), "P1", NOW),
        diff_report(fold_events(log.events[:10]), fold_events(log.events), NOW),
    ):
        sections = render.sections(kind)
        assert sections
        as_csv = list(csv.reader(io.StringIO(render.render(kind, "csv"))))
        assert {row[0] for row in as_csv if row} >= {s.name for s in sections if s.rows}
        md = render.render(kind, "md")
        assert all(f"## {s.title}" in md for s in sections)
        assert json.loads(render.render(kind, "json")) == kind
        assert "<html" in render.render(kind, "html")


def test_csv_has_one_section_per_table_with_a_section_column(report: dict[str, Any]) -> None:
    rows = list(csv.reader(io.StringIO(render.render(report, "csv"))))
    first = next(i for i, row in enumerate(rows) if row and row[0] == "budget")
    assert rows[first - 1][:3] == ["section", "pool", "name"]  # the section's own header
    assert rows[first][1] == "CAPEX-27" and "190000.00" in rows[first]
    assert rows[first + 1] == []  # a blank line before the next section


def test_html_is_self_contained_with_a_chart_each(report: dict[str, Any]) -> None:
    html = render.render(report, "html")
    charts = (
        "risk-heat-map",
        "budget-burn",
        "value-vs-cost",
        "capacity",
        "estimate-accuracy",
        "eac-convergence",
        "forecast-s-curve",
        "stakeholder-grid",
    )
    for chart in charts:
        assert f'<svg id="{chart}"' in html
    assert "<script" not in html and "http" not in html.replace(render.SVG_NS, "")
    assert html.count("<svg") == len(charts)


def test_unsupported_format_is_refused(report: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="pdf"):
        render.render(report, "pdf")


# --- times -----------------------------------------------------------------------------


def test_times_parse_iso_dates_and_relative_offsets() -> None:
    now = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    assert times.parse_time("2027-02-01T10:00:00Z", now) == datetime(2027, 2, 1, 10, tzinfo=UTC)
    assert times.parse_time("-2h", now) == now - timedelta(hours=2)
    assert times.parse_time("now", now) == now
    assert times.parse_time("2027-02-01", now).tzinfo is not None
    for bad in ("yesterday-ish", "2027-13-01", "", "-5x"):
        with pytest.raises(ValueError):
            times.parse_time(bad, now)


def test_cuts_in_the_future_or_before_the_log_are_refused(log: Log) -> None:
    first = log.at(1)
    with pytest.raises(timetravel.BadCut, match="future"):
        timetravel.check_cut(Cut(as_of=NOW + timedelta(days=1)), first, NOW)
    with pytest.raises(timetravel.BadCut, match="before the first event"):
        timetravel.check_cut(Cut(as_of=first - timedelta(seconds=1)), first, NOW)
    with pytest.raises(timetravel.BadCut, match="empty"):
        timetravel.check_cut(Cut(as_of=first), None, NOW)
    timetravel.check_cut(Cut(as_of=first), first, NOW)
    timetravel.check_cut(Cut(), None, NOW)


def test_an_answer_too_large_for_one_message_is_refused(report: dict[str, Any]) -> None:
    assert json.loads(timetravel.fit(report, 10_000_000)) == report
    refused = json.loads(timetravel.fit(report, 1_000))
    assert "narrow" in refused["error"]


# --- snapshots ---------------------------------------------------------------------------


def test_the_snapshot_fingerprint_covers_every_module_the_fold_runs() -> None:
    """A snapshot taken by other fold code must be told apart: every module the fold
    imports from the project (transitively, within the report's own modules) is hashed."""
    root = Path(snapshots.__file__).resolve().parents[2]
    covered = [root / name for name in snapshots.FOLD_SOURCES]
    assert all(path.exists() for path in covered)
    todo, seen = ["services.reporting.report"], set()
    while todo:
        module = todo.pop()
        path = root / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        assert any(path == c or c in path.parents for c in covered), module
        seen.add(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "services.reporting":
                names = [f"services.reporting.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("services.reporting") and name not in seen:
                    todo.append(name)
    assert {"services.reporting.facts", "services.reporting.highlights"} <= seen
    assert "services.reporting.figures" not in seen  # built from the fold, not folding
