"""A delivery sent whose record in the log fails (the log paused past its patience) is
recorded on the next try without being sent again: an alert to a subscription (its
message comes back) and a report or digest to a communication plan (tried at the next
wake); and whatever an alert holds, its outcome can be recorded. Pure: the sender and
the log are stand-ins that count."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from contracts import notify as n
from contracts import reports as rp
from contracts import stakeholders as sh
from domain.subscriptions import evolve_subscription
from services.notify.handlers import Attempt, SubscriptionWorker
from services.notify.projection import NotifyProjection, Subscription
from services.notify.reports import ReportDeliveries
from shared import metrics
from shared.eventlog import LogUnavailable
from shared.settings import NotifySettings

NOW = datetime.now(UTC)


class CountingSender:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, sub: Any, delivery: str, alert: dict[str, Any]) -> Attempt:
        self.sent.append(delivery)
        return Attempt(True, 200, "ok")

    async def _post(self, target: str, body: bytes, headers: dict[str, str]) -> Attempt:
        self.sent.append(target)
        return Attempt(True, 200, "ok")


class PausedLog:
    """Fails the first `failures` records, then keeps them."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.recorded: list[Any] = []

    def record(self, outcome: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise LogUnavailable("append to delivery", 10.0)
        self.recorded.append(outcome)


class Message:
    def __init__(self, alert: dict[str, Any]) -> None:
        self.data = json.dumps(alert).encode()
        self.headers: dict[str, str] = {}
        self.acked = 0

    async def ack(self) -> None:
        self.acked += 1

    async def in_progress(self) -> None:
        pass


def worker(sender: CountingSender, log: PausedLog, unrecorded: dict[Any, Any]) -> Any:
    subscribed = n.Subscribed(subscription_id="ops", channel=n.Channel.SLACK, target="x")
    state = evolve_subscription(None, subscribed)

    class Worker(SubscriptionWorker):
        async def _record(self, outcome: Any) -> None:
            log.record(outcome)

    return Worker(
        Subscription(state, NOW),
        cast(Any, None),
        cast(Any, None),
        NotifySettings().subjects,
        NotifyProjection(),
        cast(Any, sender),
        NotifySettings(),
        unrecorded,
    )


async def test_an_alert_sent_but_not_recorded_is_recorded_when_it_comes_back_not_resent() -> None:
    sender, log = CountingSender(), PausedLog(failures=2)
    unrecorded: dict[Any, Any] = {}
    first = worker(sender, log, unrecorded)
    alert = {"event": "AlertRaised", "event_id": "e-1", "alert_id": "A-1", "severity": "warning"}
    before = metrics.REGISTRY.get_sample_value(
        "portfolio_notify_deliveries_total", {"channel": "slack", "outcome": "delivered"}
    )
    for _ in range(2):  # the message comes back after each failed record
        message = Message(alert)
        with pytest.raises(LogUnavailable):
            await first.handle(message)
        assert message.acked == 0
    # The subscription's worker was replaced meanwhile: the new one knows it was sent.
    replaced = worker(sender, log, unrecorded)
    message = Message(alert)
    await replaced.handle(message)
    assert len(sender.sent) == 1 and message.acked == 1
    (outcome,) = log.recorded
    assert isinstance(outcome, n.AlertDelivered) and outcome.attempts == 1
    assert unrecorded == {}
    after = metrics.REGISTRY.get_sample_value(
        "portfolio_notify_deliveries_total", {"channel": "slack", "outcome": "delivered"}
    )
    assert (after or 0) - (before or 0) == 1  # counted once, when recorded


async def test_a_report_sent_but_not_recorded_is_recorded_at_the_next_try_not_resent() -> None:
    projection = NotifyProjection()
    plan = sh.CommunicationPlanned(
        stakeholder_id="S-1",
        plan_id="board",
        content=sh.Content.REPORT,
        frequency=sh.Frequency.ON_PUBLISH,
        channel=sh.Channel.SLACK,
        target="https://hooks.example/board",
    )
    projection._fold(plan, 1, NOW)
    report = rp.PortfolioReportPublished(
        report_id="R-1",
        position=2,
        content_position=2,
        generated_at=NOW - timedelta(minutes=1),
        rationale="board",
        summary={},
    )
    projection._fold(report, 2, NOW)
    sender, log = CountingSender(), PausedLog(failures=1)

    class Deliveries(ReportDeliveries):
        async def _record(self, outcome: Any, pending: Any) -> None:
            log.record(outcome)

    deliveries = Deliveries(NotifySettings(), cast(Any, sender), projection)
    (pending,) = projection.pending_reports()
    with pytest.raises(LogUnavailable):
        await deliveries.deliver(pending)
    assert projection.pending_reports() == [pending]  # still owed
    await deliveries.deliver(pending)
    assert sender.sent == ["https://hooks.example/board"]
    (outcome,) = log.recorded
    assert isinstance(outcome, rp.ReportDelivered) and projection.pending_reports() == []


async def test_an_alerts_own_text_is_kept_in_its_outcome_encodable_and_short() -> None:
    """Whatever an alert on the stream holds, its outcome can be appended to the log."""
    sender, log = CountingSender(), PausedLog(failures=0)
    alert = {"event_id": "e\ud800" + "x" * 100_000, "alert_id": ["A", 1], "event": None}
    message = Message(alert)
    await worker(sender, log, {}).handle(message)
    (outcome,) = log.recorded
    assert outcome.alert_event_id == ("e\\ud800" + "x" * 100_000)[:256]
    assert outcome.alert_id == "['A', 1]" and outcome.event_type == ""
    assert len(outcome.model_dump_json()) < 2_000 and message.acked == 1
