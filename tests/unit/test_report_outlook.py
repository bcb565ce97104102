"""The report's forecast inputs (from the fold: earned value, open risks, pools,
objectives), its reproducibility, the stakeholder section, and revised alerts, against the
fixed event sequence of test_report.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from contracts import risks as r
from contracts import stakeholders as sh
from services.reporting import documents, engagement, forecasting
from services.reporting.report import fold as fold_events
from shared import render
from tests.unit.test_report import NOW, Log, build


@pytest.fixture
def log() -> Log:
    return build()


def test_the_inputs_come_from_earned_value_open_risks_pools_and_objectives(log: Log) -> None:
    folded = fold_events(log.events)
    found = forecasting.inputs(folded)
    # P1 is in progress; P2 is only proposed (pipeline) and P3 rejected.
    assert [o.project_id for o in found.projects] == ["P1"]
    p1 = found.projects[0]
    assert p1.basis == "earned_value" and p1.programme is None
    # BAC 120,000, EV 48,000, AC 50,000: EAC typical 125,000, atypical 122,000.
    assert p1.cost.low == 122_000.0 and p1.cost.mode == 125_000.0
    # Open risks: R1, R2 on P1, R3 portfolio-wide; R4 is closed.
    assert [u.risk_id for u in found.risks] == ["R1", "R2", "R3"]
    r1 = found.risks[0]
    assert (r1.probability, r1.impact.mode, r1.project_id) == (0.7, 100_000.0, "P1")
    assert found.risks[2].opportunity and found.risks[2].project_id is None
    assert found.emv_reserve == Decimal("85000.00")  # 0.7 x 100,000 + 0.3 x 50,000
    pool = next(b for b in found.budgets if b.name == "pool CAPEX-27")
    # 300,000 allocated to a project planned at 125,000: the pool carries all of its cost.
    assert pool.amount == 1_000_000 and pool.weights["P1"] == 1.0
    objectives = {b.name: b for b in found.budgets if b.name.startswith("objective")}
    # P1 serves OBJ-A with 3 points and OBJ-B with 1: its 300,000 split 3:1, and so its cost.
    assert {k: b.amount for k, b in objectives.items()} == {
        "objective OBJ-A": 225_000.0,
        "objective OBJ-B": 75_000.0,
    }
    assert objectives["objective OBJ-A"].weights["P1"] == 0.75
    wider = forecasting.inputs(folded, include_pipeline=True)
    assert [o.project_id for o in wider.projects] == ["P1", "P2", "P4"]
    assert wider.projects[1].basis == "default"


def test_a_forecast_is_reproduced_by_its_seed_and_answers_every_figure(log: Log) -> None:
    folded = fold_events(log.events)
    first = forecasting.run(folded, seed=11, iterations=5_000, generated_at=NOW)
    assert first == forecasting.run(folded, seed=11, iterations=5_000, generated_at=NOW)
    assert first != forecasting.run(folded, seed=12, iterations=5_000, generated_at=NOW)
    assert (first["seed"], first["iterations"]) == (11, 5_000)
    total = first["total_cost"]
    assert [Decimal(total[k]) for k in ("p10", "p50", "p80", "p90")] == sorted(
        Decimal(total[k]) for k in ("p10", "p50", "p80", "p90")
    )
    budgets = {b["id"]: b for b in first["budgets"]}
    assert budgets["CAPEX-27"]["probability_within"] == 1.0
    assert 0.0 <= budgets["OBJ-A"]["probability_within"] <= 1.0
    assert first["emv_reserve"] == "85000.00"
    assert Decimal(first["reserve_p80"]) == max(
        Decimal(total["p80"]) - Decimal(first["planned_cost"]), Decimal(0)
    )
    assert first["projects"][0]["project_id"] == "P1"
    assert len(first["curve"]) == 41
    text = render.render(first, "md")
    assert "Portfolio forecast" in text and "CAPEX-27" in text
    assert '<svg id="forecast-s-curve"' in render.render(first, "html")


def test_a_filter_narrows_projects_risks_and_budgets(log: Log) -> None:
    folded = fold_events(log.events)
    found = forecasting.inputs(folded, project_id="P1")
    assert [u.risk_id for u in found.risks] == ["R1", "R2"]  # not the portfolio-wide R3
    pool = next(b for b in found.budgets if b.name == "pool CAPEX-27")
    assert pool.amount == 300_000.0  # what the pool allocated to P1
    with pytest.raises(forecasting.ScopeError):
        forecasting.inputs(folded, project_id="NOPE")
    with pytest.raises(forecasting.ScopeError):
        forecasting.inputs(folded, programme_id="NOPE")


def test_the_report_carries_a_forecast_and_a_stakeholder_section(log: Log) -> None:
    stakeholder = (sh.AGGREGATE, "S-1")
    log.add(
        stakeholder,
        sh.StakeholderRegistered(stakeholder_id="S-1", name="Ana", role="CFO", email=None),
    )
    log.add(
        stakeholder,
        sh.StakeholderAssessed(
            stakeholder_id="S-1",
            influence=5,
            interest=4,
            current_engagement=sh.Engagement.NEUTRAL,
            desired_engagement=sh.Engagement.LEADING,
            cares_about=(sh.Interest(kind=sh.InterestKind.PROJECT, id="P1"),),
        ),
    )
    for fid in ("F-1", "F-2"):
        log.add(
            stakeholder,
            sh.FeedbackGiven(
                stakeholder_id="S-1",
                feedback_id=fid,
                concerns=sh.Interest(kind=sh.InterestKind.PROJECT, id="P1"),
                text=f"question {fid}",
            ),
        )
    log.add(
        stakeholder, sh.FeedbackResponded(stakeholder_id="S-1", feedback_id="F-1", response="ok")
    )
    log.add(
        stakeholder,
        sh.CommunicationPlanned(
            stakeholder_id="S-1",
            plan_id="board",
            content=sh.Content.REPORT,
            frequency=sh.Frequency.ON_PUBLISH,
            channel=sh.Channel.EMAIL,
            target="ana@example.org",
        ),
    )
    log.add(
        (sh.AGGREGATE, "S-2"),
        sh.StakeholderRegistered(stakeholder_id="S-2", name="Bo", role="ops", email=None),
    )
    report = documents.portfolio(fold_events(log.events), NOW)
    people = report["stakeholders"]
    assert people["total"] == 2 and people["assessed"] == 1 and people["open_feedback"] == 1
    assert people["by_quadrant"]["manage closely"] == 1
    first = people["items"][0]
    assert (first["stakeholder_id"], first["quadrant"], first["engagement_gap"]) == (
        "S-1",
        "manage closely",
        2,
    )
    assert first["plans"] == [
        {"plan_id": "board", "content": "report", "frequency": "on_publish", "channel": "email"}
    ]
    assert "ana@example.org" not in str(report)  # targets stay out of the report
    assert [x["feedback_id"] for x in people["open_feedback_items"]] == ["F-2"]
    assert report["forecast"]["seed"] == forecasting.REPORT_SEED
    md = render.render(report, "md")
    assert "## Stakeholder engagement" in md and "## Open feedback" in md
    assert "## Portfolio forecast" in md
    html = render.render(report, "html")
    assert html.count('class="stakeholder"') == 1  # S-2 is not assessed: not on the grid
    assert engagement.figures({})["total"] == 0


def alert_event(kind: type[Any], **extra: Any) -> Any:
    common: dict[str, Any] = {
        "alert_id": "AL-1",
        "rule_id": "cpi-low",
        "metric": r.Metric.CPI,
        "comparison": r.Comparison.LT,
        "severity": r.Severity.WARNING,
        "subject_id": "P1",
        "project_id": "P1",
        "threshold": 0.9,
        "clear_at": 0.95,
    }
    if kind is r.AlertRaised:
        common |= {"scope": r.Scope.PORTFOLIO, "audit_link": "x", "value": 0.8}
    return kind(**(common | extra))


def test_a_revised_alert_shows_its_current_threshold_and_revision(log: Log) -> None:
    alert = (r.ALERT, "AL-1")
    log.add(alert, alert_event(r.AlertRaised, value_shown="0.800"))
    log.add(
        alert,
        alert_event(
            r.AlertRevised,
            rule_revision=2,
            severity=r.Severity.CRITICAL,
            threshold=0.85,
            clear_at=0.9,
            value=0.81,
            value_shown="0.810",
        ),
    )
    found = [a for a in fold_events(log.events).open_alerts() if a["alert_id"] == "AL-1"]
    assert len(found) == 1
    now = found[0]
    assert (now["rule_revision"], now["threshold"], now["clear_at"]) == (2, 0.85, 0.9)
    assert (now["severity"], now["value"], now["raised_value"]) == ("critical", 0.81, 0.8)
    assert now["revised_position"] == len(log.events)
    log.add(
        alert,
        r.AlertCleared(
            alert_id="AL-1",
            rule_id="cpi-low",
            metric=r.Metric.CPI,
            severity=r.Severity.CRITICAL,
            subject_id="P1",
            value=0.95,
            clear_at=0.9,
        ),
    )
    assert all(a["alert_id"] != "AL-1" for a in fold_events(log.events).open_alerts())


def test_the_report_shows_a_revised_alert_under_its_current_revision(log: Log) -> None:
    alert = (r.ALERT, "AL-1")
    log.add(alert, alert_event(r.AlertRaised, value_shown="0.800"))
    log.add(
        alert,
        alert_event(r.AlertRevised, rule_revision=3, threshold=0.85, clear_at=0.9, value=0.81),
    )
    report = documents.portfolio(fold_events(log.events), NOW)
    [section] = [s for s in render.sections(report) if s.name == "alerts"]
    row = next(x for x in section.rows if x[6].startswith("cpi-low"))
    assert row[4:7] == [0.85, 0.9, "cpi-low r3"]
