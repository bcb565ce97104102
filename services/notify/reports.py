"""Published reports to the stakeholders' communication plans.

When a `PortfolioReportPublished` is folded, every active plan whose content is `report`
gets it (`on_publish`: every report; `daily`, `weekly`, `monthly`: the first report of each
day, ISO week or month), through the plan's channel, with the alert channels' senders: a
signed webhook (the secret named `reports` in PORTFOLIO_NOTIFY_WEBHOOK_SECRETS), Slack,
Teams, or a mail over SMTP. Each delivery is retried with backoff like an alert's, then
recorded under `delivery/report-<stakeholder>`: `ReportDelivered` or `ReportDeadLettered`
with the reason. A delivery already recorded is never sent again. A report already older
than `MAX_AGE` when notify folds it (a first start or a replay over an old log) is owed to
no one; one that grows older than that while owed (its receiver down all along) is
dead-lettered as too old rather than sent late.

The message is a digest of the report's summary (projects by status, budget by pool, open
risks and the contingency reserve, open alerts, health, the top of the ranking) and a link
to the dashboard: receivers needing the full report ask for it (`portfolio report`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import aiohttp
import aiosmtplib
import structlog

from contracts import reports as rp
from contracts import stakeholders as sh
from domain import subscriptions as subs
from shared.decisions import append_decision
from shared.eventlog import ConcurrencyConflict, EventLog
from shared.settings import NotifySettings

if TYPE_CHECKING:
    from services.notify.handlers import Attempt, Sender

log = structlog.get_logger(__name__)

#: A report not sent within this long after its publication is dead-lettered, not sent.
MAX_AGE = timedelta(days=7)
#: The webhook signing secret's name in PORTFOLIO_NOTIFY_WEBHOOK_SECRETS.
SECRET_NAME = "reports"
DELIVERY_NAMESPACE = uuid.UUID("5e0f0b1c-7a4e-4f0e-8b7a-2f6d1c9e3a41")


@dataclass(frozen=True)
class Pending:
    """One report owed to one plan."""

    position: int
    report: rp.PortfolioReportPublished
    plan: sh.CommunicationPlanned

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.plan.stakeholder_id, self.plan.plan_id, self.report.report_id)

    @property
    def delivery_id(self) -> str:
        return str(uuid.uuid5(DELIVERY_NAMESPACE, "/".join(self.key)))


def period(frequency: sh.Frequency, moment: datetime) -> str:
    """The period a report counts in for a plan of this frequency (one report each)."""
    match frequency:
        case sh.Frequency.DAILY:
            return moment.date().isoformat()
        case sh.Frequency.WEEKLY:
            year, week, _ = moment.isocalendar()
            return f"{year}-W{week:02d}"
        case sh.Frequency.MONTHLY:
            return f"{moment:%Y-%m}"
    return f"report {moment.isoformat()}"


def digest(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What a message says of a report (and what the notify service keeps of it)."""
    alerts = summary.get("alerts") or {}
    pools = summary.get("pools") or {}
    return {
        "projects": dict(sorted(Counter((summary.get("projects") or {}).values()).items())),
        "open_risks": len(summary.get("risks") or {}),
        "contingency_reserve": summary.get("contingency_reserve"),
        "open_alerts": len(alerts),
        "alerts_by_severity": dict(
            sorted(Counter(str(a.get("severity")) for a in alerts.values()).items())
        ),
        "health": dict(sorted(Counter((summary.get("health") or {}).values()).items())),
        "ranking": list(summary.get("ranking") or [])[:10],
        "pools": {k: pools[k] for k in sorted(pools)[:20]},
    }


def lines(report: rp.PortfolioReportPublished) -> list[tuple[str, str]]:
    found = report.summary
    pairs = [
        ("report", report.report_id),
        ("published", report.generated_at.isoformat()),
        ("why", report.rationale),
        ("projects", ", ".join(f"{v} {k}" for k, v in found.get("projects", {}).items()) or "0"),
        ("open risks", str(found.get("open_risks", 0))),
        ("contingency reserve", str(found.get("contingency_reserve"))),
        (
            "open alerts",
            f"{found.get('open_alerts', 0)} "
            + ", ".join(f"{v} {k}" for k, v in found.get("alerts_by_severity", {}).items()),
        ),
        ("health", ", ".join(f"{v} {k}" for k, v in found.get("health", {}).items()) or "—"),
        ("top of the ranking", ", ".join(found.get("ranking", [])) or "—"),
    ]
    for pool_id, figures in found.get("pools", {}).items():
        pairs.append(
            (
                f"pool {pool_id}",
                f"{figures.get('currency', '')} amount {figures.get('amount')}, actual "
                f"{figures.get('actual')}, remaining {figures.get('remaining')}",
            )
        )
    return pairs


def headline(report: rp.PortfolioReportPublished) -> str:
    return f"Portfolio report {report.report_id} ({report.generated_at:%Y-%m-%d})"


def link(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/overview"


def webhook_body(pending: Pending, base_url: str) -> bytes:
    body = {
        "delivery_id": pending.delivery_id,
        "event": "PortfolioReportPublished",
        "stakeholder_id": pending.plan.stakeholder_id,
        "plan_id": pending.plan.plan_id,
        "headline": headline(pending.report),
        "link": link(base_url),
        "report": pending.report.model_dump(mode="json"),
    }
    return json.dumps(body, sort_keys=True).encode()


def slack_body(pending: Pending, base_url: str) -> bytes:
    pairs = lines(pending.report)
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in pairs[:10]]
    body = {
        "text": f"{headline(pending.report)}: {pending.report.rationale} <{link(base_url)}|open>",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline(pending.report)}},
            {"type": "section", "fields": fields},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open"},
                        "url": link(base_url),
                    }
                ],
            },
        ],
    }
    return json.dumps(body).encode()


def teams_body(pending: Pending, base_url: str) -> bytes:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": headline(pending.report), "weight": "Bolder"},
            {
                "type": "FactSet",
                "facts": [{"title": k, "value": v} for k, v in lines(pending.report)],
            },
        ],
        "actions": [
            {"type": "Action.OpenUrl", "title": "Open in the dashboard", "url": link(base_url)}
        ],
    }
    body = {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }
    return json.dumps(body).encode()


def email_text(pending: Pending, base_url: str) -> tuple[str, str]:
    text = [f"{k}: {v}" for k, v in lines(pending.report)]
    text += ["", f"Dashboard: {link(base_url)}"]
    return headline(pending.report), "\n".join(text) + "\n"


async def send(sender: Sender, settings: NotifySettings, pending: Pending) -> Attempt:
    """One attempt over the plan's channel, with the alert channels' sender."""
    from services.notify.handlers import Attempt  # the sender's own result type

    plan, base = pending.plan, settings.dashboard_base_url
    json_headers = {"Content-Type": "application/json"}
    try:
        match plan.channel:
            case sh.Channel.WEBHOOK:
                secret = settings.notify_webhook_secrets.get(SECRET_NAME)
                if secret is None:
                    return Attempt(False, None, f"no webhook secret named {SECRET_NAME!r}", True)
                body = webhook_body(pending, base)
                headers = {
                    **json_headers,
                    "X-Hub-Signature-256": subs.signature(secret, body),
                    "X-Portfolio-Delivery": pending.delivery_id,
                    "X-Portfolio-Timestamp": str(int(time.time())),
                    "X-Portfolio-Event": "PortfolioReportPublished",
                }
                return await sender._post(plan.target, body, headers)
            case sh.Channel.SLACK:
                return await sender._post(plan.target, slack_body(pending, base), json_headers)
            case sh.Channel.TEAMS:
                return await sender._post(plan.target, teams_body(pending, base), json_headers)
            case sh.Channel.EMAIL:
                subject, text = email_text(pending, base)
                message = EmailMessage()
                message["From"] = settings.smtp_from
                message["To"] = plan.target
                message["Subject"] = subject
                message["X-Portfolio-Delivery"] = pending.delivery_id
                message.set_content(text)
                await aiosmtplib.send(
                    message,
                    hostname=settings.smtp_host,
                    port=settings.smtp_port,
                    username=settings.smtp_username,
                    password=settings.smtp_password,
                    start_tls=settings.smtp_starttls,
                    timeout=settings.notify_timeout_seconds,
                )
                return Attempt(True, 250, "accepted")
    except (
        aiohttp.ClientError,
        aiosmtplib.SMTPException,
        OSError,
        TimeoutError,
        ValueError,
    ) as error:
        return Attempt(False, None, f"{type(error).__name__}: {error}"[:500])
    return Attempt(False, None, f"unknown channel {plan.channel}", True)


class ReportDeliveries:
    """Sends what the projection says is owed, one delivery at a time, in log order; woken
    after every batch the projection applies."""

    def __init__(self, settings: NotifySettings, sender: Sender, owed: Any) -> None:
        self.settings = settings
        self.sender = sender
        #: The projection: `pending_reports()` and `record_report(outcome)`.
        self.owed = owed
        self.event_log: EventLog | None = None
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="notify:reports")
        self.wake.set()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self.task, 5)
            self.task = None

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            for pending in list(self.owed.pending_reports()):
                try:
                    await self.deliver(pending)
                except asyncio.CancelledError:
                    raise
                except Exception:  # tried again at the next wake; the loop goes on (logged)
                    log.exception("notify.report_failed", report=pending.report.report_id)
                    await asyncio.sleep(self.settings.notify_backoff_seconds)
                    self.wake.set()
                    break

    async def deliver(self, pending: Pending, now: datetime | None = None) -> None:
        from services.notify.handlers import Attempt

        now = now or datetime.now(UTC)
        attempts, result = 0, Attempt(False, None, "not tried")
        if now - pending.report.generated_at > MAX_AGE:
            result = Attempt(False, None, f"published more than {MAX_AGE.days} days ago", True)
        else:
            wait = self.settings.notify_backoff_seconds
            while True:
                attempts += 1
                result = await send(self.sender, self.settings, pending)
                if result.ok or result.permanent or attempts >= self.settings.notify_max_attempts:
                    break
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.settings.notify_backoff_max_seconds)
        common = {
            "report_id": pending.report.report_id,
            "stakeholder_id": pending.plan.stakeholder_id,
            "plan_id": pending.plan.plan_id,
            "delivery_id": pending.delivery_id,
            "channel": str(pending.plan.channel),
            "attempts": attempts,
        }
        outcome: rp.ReportDelivered | rp.ReportDeadLettered
        if result.ok:
            outcome = rp.ReportDelivered(**common, status=result.status or 0)
        else:
            reason = result.detail if result.permanent else f"{attempts} attempts: {result.detail}"
            outcome = rp.ReportDeadLettered(**common, reason=reason[:1000])
        await self._record(outcome, pending)
        self.owed.record_report(outcome, None, None)
        log.info(
            "notify.report_" + ("delivered" if result.ok else "dead_letter"),
            report=pending.report.report_id,
            stakeholder=pending.plan.stakeholder_id,
            plan=pending.plan.plan_id,
        )

    async def _record(self, outcome: Any, pending: Pending) -> None:
        if self.event_log is None:
            raise RuntimeError("no event log yet")
        for attempt in range(10):
            try:
                await append_decision(
                    self.event_log,
                    rp.delivery_aggregate(pending.plan.stakeholder_id),
                    outcome,
                    "/".join(pending.key),
                    None,
                    actor="notify",
                    source="notify",
                )
                return
            except ConcurrencyConflict:
                if attempt == 9:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
