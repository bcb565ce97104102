"""Which published reports each communication plan is owed (notify's fold, pure): every
report for `on_publish`, the first of each day, ISO week or month otherwise; none for an
alert digest or a stopped plan; nothing owed once its outcome is recorded (also when the
outcome is folded from the log after a restart)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts import reports as rp
from contracts import stakeholders as sh
from services.notify.projection import NotifyProjection
from services.notify.reports import digest, period

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)  # a Monday


def plan(plan_id: str, frequency: str, content: str = "report") -> sh.CommunicationPlanned:
    return sh.CommunicationPlanned(
        stakeholder_id="S-1",
        plan_id=plan_id,
        content=sh.Content(content),
        frequency=sh.Frequency(frequency),
        channel=sh.Channel.EMAIL,
        target="ana@example.org",
    )


def published(n: int, at: datetime) -> rp.PortfolioReportPublished:
    summary = {
        "projects": {"P-1": "approved", "P-2": "approved", "P-3": "proposed"},
        "risks": {"R-1": {"score": 12}},
        "alerts": {"A-1": {"severity": "critical", "subject_id": "P-1"}},
        "health": {"P-1": "red"},
        "ranking": ["P-1", "P-2"],
        "pools": {"CAPEX": {"amount": "10.00", "actual": "1.00", "remaining": "9.00"}},
        "contingency_reserve": "700.00",
    }
    return rp.PortfolioReportPublished(
        report_id=f"R-{n}",
        position=n,
        content_position=n,
        generated_at=at,
        rationale="board",
        summary=summary,
    )


def owed(projection: NotifyProjection) -> list[tuple[str, str]]:
    return [(p.plan.plan_id, p.report.report_id) for p in projection.pending_reports()]


def test_frequencies_decide_which_reports_a_plan_is_owed() -> None:
    projection = NotifyProjection()
    for planned in (
        plan("each", "on_publish"),
        plan("day", "daily"),
        plan("week", "weekly"),
        plan("month", "monthly"),
        plan("alerts", "on_publish", "alert_digest"),
    ):
        projection._fold(planned, 1, T0)
    moments = [T0, T0 + timedelta(hours=2), T0 + timedelta(days=1), T0 + timedelta(days=7)]
    for n, moment in enumerate(moments, start=10):
        projection._fold(published(n, moment), n, moment)
    found = owed(projection)
    assert [r for p, r in found if p == "each"] == ["R-10", "R-11", "R-12", "R-13"]
    assert [r for p, r in found if p == "day"] == ["R-10", "R-12", "R-13"]
    assert [r for p, r in found if p == "week"] == ["R-10", "R-13"]
    assert [r for p, r in found if p == "month"] == ["R-10"]
    assert not [r for p, r in found if p == "alerts"]
    # What is kept of a report is its digest.
    kept = projection.pending_reports()[0].report.summary
    assert kept["projects"] == {"approved": 2, "proposed": 1}
    assert kept["alerts_by_severity"] == {"critical": 1} and kept["open_risks"] == 1


def test_an_outcome_settles_a_delivery_and_a_stopped_plan_is_owed_nothing() -> None:
    projection = NotifyProjection()
    projection._fold(plan("each", "on_publish"), 1, T0)
    projection._fold(published(2, T0), 2, T0)
    pending = projection.pending_reports()[0]
    outcome = rp.ReportDelivered(
        report_id="R-2",
        stakeholder_id="S-1",
        plan_id="each",
        delivery_id=pending.delivery_id,
        channel="email",
        attempts=1,
        status=250,
    )
    projection._fold(outcome, 3, T0)
    projection._fold(outcome, 4, T0)  # a repeat changes nothing
    assert owed(projection) == [] and len(projection.report_outcomes) == 1
    projection._fold(sh.CommunicationStopped(stakeholder_id="S-1", plan_id="each"), 5, T0)
    projection._fold(published(6, T0), 6, T0)
    assert owed(projection) == []


def test_the_same_delivery_has_the_same_id_and_periods_have_stable_names() -> None:
    projection = NotifyProjection()
    projection._fold(plan("each", "on_publish"), 1, T0)
    projection._fold(published(2, T0), 2, T0)
    again = NotifyProjection()
    again._fold(plan("each", "on_publish"), 1, T0)
    again._fold(published(2, T0), 2, T0)
    assert projection.pending_reports()[0].delivery_id == again.pending_reports()[0].delivery_id
    assert period(sh.Frequency.WEEKLY, datetime(2027, 1, 1, tzinfo=UTC)) == "2026-W53"
    assert period(sh.Frequency.MONTHLY, T0) == "2027-03"
    assert digest({})["projects"] == {} and digest({})["open_alerts"] == 0


def test_a_report_older_than_a_week_when_folded_is_owed_to_no_one() -> None:
    projection = NotifyProjection()
    projection._fold(plan("each", "on_publish"), 1, T0)
    old = datetime.now(UTC) - timedelta(days=8)
    projection._fold(published(2, old), 2, old)
    recent = datetime.now(UTC) - timedelta(days=6)
    projection._fold(published(3, recent), 3, recent)
    assert owed(projection) == [("each", "R-3")]
