"""Which published reports each communication plan is owed (notify's fold, pure): every
report for `on_publish`, the first of each day, ISO week or month otherwise; none for a
stopped plan; nothing owed once its outcome is recorded (also when the outcome is folded
from the log after a restart). An alert digest plan is owed the same publications, and its
message tells the alerts open, raised and cleared since its previous digest, checked
against sets of alerts kept apart from the fold."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import reports as rp
from contracts import stakeholders as sh
from services.notify.handlers import Attempt
from services.notify.projection import NotifyProjection
from services.notify.reports import (
    DIGEST_LIST,
    Pending,
    ReportDeliveries,
    digest,
    email_text,
    message,
    period,
    slack_body,
    teams_body,
    webhook_body,
)
from shared import metrics
from shared.settings import NotifySettings


def first_monday_of_next_month(today: datetime) -> datetime:
    """A Monday early in a month, ahead of the clock: notify owes no report older than a
    week by the wall clock, so a fixed date would stop these tests passing a week after
    it; and a week later it is still the same month."""
    month = datetime(today.year + today.month // 12, today.month % 12 + 1, 1, 9, tzinfo=UTC)
    return month + timedelta(days=-month.weekday() % 7)


T0 = first_monday_of_next_month(datetime.now(UTC))
DAY = f"{T0:%Y-%m-%d}"


def plan(plan_id: str, frequency: str, content: str = "report") -> sh.CommunicationPlanned:
    return sh.CommunicationPlanned(
        stakeholder_id="S-1",
        plan_id=plan_id,
        content=sh.Content(content),
        frequency=sh.Frequency(frequency),
        channel=sh.Channel.EMAIL,
        target="ana@example.org",
    )


def published(
    n: int, at: datetime, alerts: dict[str, Any] | None = None
) -> rp.PortfolioReportPublished:
    summary = {
        "projects": {"P-1": "approved", "P-2": "approved", "P-3": "proposed"},
        "risks": {"R-1": {"score": 12}},
        "alerts": (
            {"A-1": {"severity": "critical", "subject_id": "P-1"}} if alerts is None else alerts
        ),
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
    assert [r for p, r in found if p == "alerts"] == ["R-10", "R-11", "R-12", "R-13"]
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
    assert period(sh.Frequency.MONTHLY, T0) == f"{T0:%Y-%m}"
    assert digest({})["projects"] == {} and digest({})["open_alerts"] == 0


def test_a_report_older_than_a_week_when_folded_is_owed_to_no_one() -> None:
    projection = NotifyProjection()
    projection._fold(plan("each", "on_publish"), 1, T0)
    old = datetime.now(UTC) - timedelta(days=8)
    projection._fold(published(2, old), 2, old)
    recent = datetime.now(UTC) - timedelta(days=6)
    projection._fold(published(3, recent), 3, recent)
    assert owed(projection) == [("each", "R-3")]


SEVERITIES = ("critical", "warning", "info")


def alerts_of(ids: set[int]) -> dict[str, Any]:
    return {
        f"A-{i:03d}": {"severity": SEVERITIES[i % 3], "subject_id": f"P-{i % 7}", "value": 0.8}
        for i in ids
    }


def digests(publications: list[set[int]]) -> list[Pending]:
    projection = NotifyProjection()
    projection._fold(plan("alerts", "on_publish", "alert_digest"), 1, T0)
    for n, ids in enumerate(publications, start=2):
        moment = T0 + timedelta(hours=n)
        projection._fold(published(n, moment, alerts_of(ids)), n, moment)
    return projection.pending_reports()


def named(ids: set[int]) -> list[str]:
    """The oracle's list: most severe first, then by id, the first `DIGEST_LIST`."""
    ordered = sorted(ids, key=lambda i: (i % 3, i))
    return [f"A-{i:03d}" for i in ordered[:DIGEST_LIST]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sets(st.integers(0, 60), max_size=45), min_size=1, max_size=5))
def test_each_alert_digest_tells_the_alerts_open_raised_and_cleared_since_the_last(
    publications: list[set[int]],
) -> None:
    owed_digests = digests(publications)
    assert [p.report.report_id for p in owed_digests] == [
        f"R-{n}" for n in range(2, len(publications) + 2)
    ]
    previous: set[int] | None = None
    for pending, ids in zip(owed_digests, publications, strict=True):
        body = json.loads(webhook_body(pending, message(pending, "http://dash")))
        found = body["digest"]
        assert body["event"] == "AlertDigest" and body["link"] == "http://dash/alerts"
        assert found["open_alerts"] == len(ids)
        assert [x["alert_id"] for x in found["open"]] == named(ids)
        assert sum(found["by_severity"].values()) == len(ids)
        if previous is None:
            assert "raised" not in found and "since" not in found
        else:
            assert found["raised_since"] == len(ids - previous)
            assert found["cleared_since"] == len(previous - ids)
            assert [x["alert_id"] for x in found["raised"]] == named(ids - previous)
            assert [x["alert_id"] for x in found["cleared"]] == named(previous - ids)
        previous = ids


def test_an_alert_digest_reads_the_same_on_every_channel() -> None:
    first, second = digests([{1, 2}, set(range(2, 40))])
    found = message(second, "http://dash/")
    subject, text = email_text(found)
    assert subject == f"Alert digest ({DAY}): 38 open"
    assert "raised since (37): A-003 (critical, P-3)" in text
    assert "and 17 more" in text  # 37 raised, the first 20 named
    assert "cleared since (1): A-001 (warning, P-1)" in text
    assert text.endswith("Dashboard: http://dash/alerts\n")
    slack = json.loads(slack_body(found))
    assert slack["text"].startswith(f"Alert digest ({DAY}): 38 open: 38 open alerts, 37")
    teams = json.loads(teams_body(found))
    facts = teams["attachments"][0]["content"]["body"][1]["facts"]
    assert facts[0] == {"title": "published", "value": f"{DAY}T12:00:00+00:00"}
    assert "since" not in json.loads(webhook_body(first, message(first, "x")))["digest"]
    # A report plan's message is the report, as before.
    report = NotifyProjection()
    report._fold(plan("each", "on_publish"), 1, T0)
    report._fold(published(2, T0), 2, T0)
    pending = report.pending_reports()[0]
    body = json.loads(webhook_body(pending, message(pending, "http://dash")))
    assert body["event"] == "PortfolioReportPublished" and body["report"]["report_id"] == "R-2"
    assert body["link"] == "http://dash/overview"


def test_a_digest_kept_before_alert_digests_were_sent_is_owed_to_report_plans_only() -> None:
    projection = NotifyProjection()
    projection._fold(plan("each", "on_publish"), 1, T0)
    projection._fold(plan("alerts", "on_publish", "alert_digest"), 1, T0)
    kept = digest(published(2, T0).summary)
    del kept["alerts"]  # as the previous version kept a report in notify_facts
    projection._fold(published(2, T0).model_copy(update={"summary": kept}), 2, T0)
    assert owed(projection) == [("each", "R-2")]
    later = T0 + timedelta(hours=1)
    projection._fold(published(3, later), 3, later)
    first_digest = [p for p in projection.pending_reports() if p.plan.plan_id == "alerts"]
    assert [p.report.report_id for p in first_digest] == ["R-3"]
    assert first_digest[0].since is None  # no comparison with a digest naming no alerts


def test_an_alert_digest_plan_replanned_for_reports_starts_its_digests_afresh() -> None:
    projection = NotifyProjection()
    projection._fold(plan("p", "on_publish", "alert_digest"), 1, T0)
    projection._fold(published(2, T0), 2, T0)
    projection._fold(plan("p", "on_publish", "report"), 3, T0)
    projection._fold(plan("p", "on_publish", "alert_digest"), 4, T0)
    later = T0 + timedelta(hours=1)
    projection._fold(published(5, later), 5, later)
    assert [p.since for p in projection.pending_reports() if p.report.report_id == "R-5"] == [None]


async def test_a_summary_that_cannot_be_rendered_is_dead_lettered_not_retried() -> None:
    """A published summary of an unexpected shape (a pool that is not an object) costs its
    own delivery, with the reason, and nothing later waits behind it."""
    projection = NotifyProjection()
    projection._fold(plan("each", "on_publish"), 1, T0)
    odd = published(2, T0)
    odd = odd.model_copy(update={"summary": {**odd.summary, "pools": {"CAPEX": "oops"}}})
    projection._fold(odd, 2, T0)
    projection._fold(published(3, T0 + timedelta(hours=1)), 3, T0)
    tried: list[str] = []

    class Sender:
        async def _post(self, target: str, body: bytes, headers: dict[str, str]) -> Attempt:
            tried.append(json.loads(body)["report"]["report_id"])
            return Attempt(True, 200, "ok")

    recorded: list[Any] = []

    class Deliveries(ReportDeliveries):
        async def _record(self, outcome: Any, pending: Pending) -> None:
            recorded.append(outcome)

    settings = NotifySettings(notify_webhook_secrets={"reports": "s"})
    deliveries = Deliveries(settings, cast(Any, Sender()), projection)
    before = {kind: delivered_metric(kind) for kind in ("delivered", "dead_letter")}
    still_owed = []
    for pending in projection.pending_reports():
        webhook = pending.plan.model_copy(update={"channel": sh.Channel.WEBHOOK})
        await deliveries.deliver(replace(pending, plan=webhook))
        still_owed.append(metrics.REGISTRY.get_sample_value(OWED))
    assert tried == ["R-3"] and still_owed == [1, 0]
    # Operators see each outcome on /metrics and in `portfolio status`; nothing is owed.
    assert {k: delivered_metric(k) - v for k, v in before.items()} == {
        "delivered": 1,
        "dead_letter": 1,
    }
    dead, sent = recorded
    assert isinstance(dead, rp.ReportDeadLettered) and dead.attempts == 1
    assert "could not be built: AttributeError" in dead.reason
    assert isinstance(sent, rp.ReportDelivered) and sent.report_id == "R-3"
    assert owed(projection) == []


OWED = "portfolio_notify_plan_deliveries_owed"


def delivered_metric(outcome: str) -> float:
    labels = {"content": "report", "channel": "webhook", "outcome": outcome}
    found = metrics.REGISTRY.get_sample_value("portfolio_notify_plan_deliveries_total", labels)
    return found or 0.0


async def test_a_plan_delivery_tried_again_is_counted_as_a_retry() -> None:
    projection = NotifyProjection()
    projection._fold(plan("digest", "on_publish", "alert_digest"), 1, T0)
    projection._fold(published(2, T0), 2, T0)
    answers = [Attempt(False, 503, "down"), Attempt(True, 200, "ok")]

    class Sender:
        async def _post(self, target: str, body: bytes, headers: dict[str, str]) -> Attempt:
            return answers.pop(0)

    class Deliveries(ReportDeliveries):
        async def _record(self, outcome: Any, pending: Pending) -> None:
            assert isinstance(outcome, rp.ReportDelivered) and outcome.attempts == 2

    settings = NotifySettings(notify_backoff_seconds=0.001)
    labels = {"content": "alert_digest", "channel": "slack"}
    name = "portfolio_notify_plan_delivery_retries_total"
    before = metrics.REGISTRY.get_sample_value(name, labels) or 0.0
    (pending,) = projection.pending_reports()
    slack = pending.plan.model_copy(update={"channel": sh.Channel.SLACK})
    await Deliveries(settings, cast(Any, Sender()), projection).deliver(
        replace(pending, plan=slack)
    )
    assert metrics.REGISTRY.get_sample_value(name, labels) == before + 1
    assert answers == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)
PARTS = ("projects", "risks", "alerts", "health", "ranking", "pools", "contingency_reserve")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(PARTS), JSON))
def test_a_published_summary_of_any_shape_folds_and_is_owed(summary: dict[str, Any]) -> None:
    """An event on the log that reporting did not write (the embedded server lets anyone
    publish) may hold anything in its summary: notify's fold takes it, owes it, and never
    stalls on it."""
    projection = NotifyProjection()
    projection._fold(plan("each", "on_publish"), 1, T0)
    projection._fold(plan("alerts", "on_publish", "alert_digest"), 1, T0)
    report = published(2, T0).model_copy(update={"summary": summary})
    projection._fold(report, 2, T0)
    assert sorted(p.plan.plan_id for p in projection.pending_reports()) == ["alerts", "each"]
    kept = digest(summary)
    assert kept["open_alerts"] == len(kept["alerts"]) == sum(kept["alerts_by_severity"].values())
