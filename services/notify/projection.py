"""The notify service's read model: the subscriptions and every delivery outcome, folded
from the log (kept in a table, so a restart folds them again without reading the log);
and for published reports, the stakeholders' communication plans and which reports each
plan is still owed, reports or alert digests (services/notify/reports.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Connection, DateTime, Integer, MetaData, String, Table, select

from contracts import notify as n
from contracts import reports as rp
from contracts import stakeholders as sh
from contracts.base import FrozenModel, RecordedEvent
from contracts.registry import parse_payload
from domain.subscriptions import SubscriptionState, evolve_subscription
from services.notify.reports import MAX_AGE, Pending, digest, period
from shared.db import JsonDocument
from shared.projection import CannotApply, Projection

NAME = "notify"
REPORT_TYPES: tuple[type[FrozenModel], ...] = (
    sh.CommunicationPlanned,
    sh.CommunicationStopped,
    rp.PortfolioReportPublished,
    rp.ReportDelivered,
    rp.ReportDeadLettered,
)
TYPES = frozenset(t.__name__ for t in (*n.EVENTS, *REPORT_TYPES))
PUBLISHED = rp.PortfolioReportPublished.__name__


@dataclass
class Subscription:
    state: SubscriptionState
    #: When it was (last) subscribed: its consumer starts with the alerts from then on.
    since: datetime


class NotifyProjection(Projection):
    name = NAME

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.facts = Table(
            "notify_facts",
            self.metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("event_type", String(64), nullable=False),
            Column("schema_version", Integer, nullable=False),
            Column("recorded_at", DateTime(timezone=True), nullable=False),
            Column("payload", JsonDocument, nullable=False),
        )
        self.reset()

    def reset(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self.outcomes: list[dict[str, Any]] = []
        #: (subscription id, alert event id) already delivered or dead-lettered.
        self.done: set[tuple[str, str]] = set()
        #: Set when subscriptions changed: the workers are brought in line after the batch.
        self.changed = True
        #: Communication plans by (stakeholder, plan), the period each last got a report
        #: in, the reports owed by (stakeholder, plan, report), and their outcomes.
        self.plans: dict[tuple[str, str], sh.CommunicationPlanned] = {}
        self.last_period: dict[tuple[str, str], str] = {}
        self.owed: dict[tuple[str, str, str], Pending] = {}
        #: The publication each alert digest plan's last digest rode on (what the next one
        #: counts the alerts raised and cleared from).
        self.last_digest: dict[tuple[str, str], rp.PortfolioReportPublished] = {}
        self.reports_done: set[tuple[str, str, str]] = set()
        self.report_outcomes: list[dict[str, Any]] = []

    def load(self, conn: Connection) -> None:
        self.reset()
        for row in conn.execute(select(self.facts).order_by(self.facts.c.position)):
            event = parse_payload(row.event_type, row.payload, row.schema_version)
            self._fold(event, row.position, row.recorded_at)

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        e = event.envelope
        if e.event_type not in TYPES:
            return
        try:
            parsed = parse_payload(e.event_type, e.payload, e.schema_version)
            self._fold(parsed, event.position, e.recorded_at)
        except (ValueError, KeyError) as error:
            raise CannotApply(f"{e.event_type} on {e.aggregate_id}: {error}") from error
        payload = e.payload
        if isinstance(parsed, rp.PortfolioReportPublished):
            # Kept as the digest its message needs, not the whole summary.
            payload = {**e.payload, "summary": digest(parsed.summary)}
        self.insert_later(
            self.facts,
            {
                "position": event.position,
                "event_type": e.event_type,
                "schema_version": e.schema_version,
                "recorded_at": e.recorded_at,
                "payload": payload,
            },
        )

    def _fold(self, event: FrozenModel, position: int, at: datetime) -> None:
        match event:
            case n.Subscribed() | n.Unsubscribed():
                found = self.subscriptions.get(event.subscription_id)
                state = evolve_subscription(None if found is None else found.state, event)
                since = at if isinstance(event, n.Subscribed) else (found.since if found else at)
                self.subscriptions[event.subscription_id] = Subscription(state, since)
                self.changed = True
            case n.AlertDelivered() | n.AlertDeadLettered():
                self.record(event, position, at)
            case sh.CommunicationPlanned():
                key = (event.stakeholder_id, event.plan_id)
                before = self.plans.get(key)
                if before is not None and before.content != event.content:
                    self.last_digest.pop(key, None)
                self.plans[key] = event
            case sh.CommunicationStopped():
                key = (event.stakeholder_id, event.plan_id)
                self.plans.pop(key, None)
                self.last_period.pop(key, None)
                self.last_digest.pop(key, None)
                self.owed = {k: v for k, v in self.owed.items() if k[:2] != key}
            case rp.PortfolioReportPublished():
                self._published(event, position)
            case rp.ReportDelivered() | rp.ReportDeadLettered():
                self.record_report(event, position, at)

    def _published(self, report: rp.PortfolioReportPublished, position: int) -> None:
        """Owe the report to every plan, one per period of its frequency: the report itself,
        or the alert digest it carries (measured from the plan's previous digest). A report
        already older than `MAX_AGE` when folded (a first start or a replay over an old
        log) is owed to no one: history is not mailed out again."""
        if datetime.now(UTC) - report.generated_at > MAX_AGE:
            return
        if "open_risks" not in report.summary:  # folded from the log: keep the digest only
            report = report.model_copy(update={"summary": digest(report.summary)})
        # A digest kept by the version before alert digests were sent names no alerts: it
        # is owed to the report plans only (no burst of old digests after an upgrade).
        names_alerts = "alerts" in report.summary
        for key, plan in sorted(self.plans.items()):
            digesting = plan.content == sh.Content.ALERT_DIGEST
            if digesting and not names_alerts:
                continue
            when = period(plan.frequency, report.generated_at)
            if self.last_period.get(key) == when:
                continue
            self.last_period[key] = when
            since = None
            if digesting:
                since = self.last_digest.get(key)
                self.last_digest[key] = report
            owed = Pending(position, report, plan, since)
            if owed.key not in self.reports_done:
                self.owed[owed.key] = owed

    def record_report(
        self,
        event: rp.ReportDelivered | rp.ReportDeadLettered,
        position: int | None,
        at: datetime | None,
    ) -> None:
        key = (event.stakeholder_id, event.plan_id, event.report_id)
        self.owed.pop(key, None)
        if key in self.reports_done:
            return
        self.reports_done.add(key)
        self.report_outcomes.append(
            {
                "outcome": "delivered" if isinstance(event, rp.ReportDelivered) else "dead_letter",
                "position": position,
                "at": None if at is None else at.isoformat(),
                **event.model_dump(mode="json"),
            }
        )

    def pending_reports(self) -> list[Pending]:
        """What is owed, in log order."""
        return sorted(self.owed.values(), key=lambda x: (x.position, x.key))

    def record(
        self,
        event: n.AlertDelivered | n.AlertDeadLettered,
        position: int | None,
        at: datetime | None,
    ) -> None:
        key = (event.subscription_id, event.alert_event_id)
        if key in self.done:
            return
        self.done.add(key)
        self.outcomes.append(
            {
                "outcome": "delivered" if isinstance(event, n.AlertDelivered) else "dead_letter",
                "position": position,
                "at": None if at is None else at.isoformat(),
                **event.model_dump(mode="json"),
            }
        )

    def active(self) -> dict[str, Subscription]:
        return {k: v for k, v in self.subscriptions.items() if v.state.active}
