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

A plan whose content is `alert_digest` is owed the same publications by the same rules,
and gets the alerts instead: those open when the report was published, by severity, with
the ones raised and cleared since the plan's previous digest (`AlertDigest`; each list
names at most `DIGEST_LIST` alerts, the counts are whole). The publication schedule is
the digest's clock, so a digest and the report it rides on tell the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import aiosmtplib
import structlog

from contracts import reports as rp
from contracts import stakeholders as sh
from domain import subscriptions as subs
from shared import metrics
from shared.commands import printable
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
#: At most this many alerts are named in each list of an alert digest (the counts are whole).
DIGEST_LIST = 20
#: The order alerts are listed in, most severe first (an unknown severity last).
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
#: What a delivery to a plan comes to, recorded under `delivery/report-<stakeholder>`.
Outcome = rp.ReportDelivered | rp.ReportDeadLettered
DELIVERY_NAMESPACE = uuid.UUID("5e0f0b1c-7a4e-4f0e-8b7a-2f6d1c9e3a41")


@dataclass(frozen=True)
class Pending:
    """One report owed to one plan."""

    position: int
    report: rp.PortfolioReportPublished
    plan: sh.CommunicationPlanned
    #: For an alert digest: the publication the plan's previous digest rode on (None: its
    #: first), what the alerts raised and cleared since are measured from.
    since: rp.PortfolioReportPublished | None = None

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
    """What a message says of a report (and what the notify service keeps of it). Total:
    a part of another shape than reporting writes (an event from anywhere else on the
    log) counts as empty, never as a fold that fails for ever."""
    alerts = {k: v for k, v in _mapping(summary.get("alerts")).items() if isinstance(v, Mapping)}
    pools = _mapping(summary.get("pools"))
    ranking = summary.get("ranking")
    return {
        "projects": _counted(_mapping(summary.get("projects")).values()),
        "open_risks": len(_mapping(summary.get("risks"))),
        "contingency_reserve": summary.get("contingency_reserve"),
        "open_alerts": len(alerts),
        "alerts_by_severity": _counted(a.get("severity") for a in alerts.values()),
        "health": _counted(_mapping(summary.get("health")).values()),
        "ranking": [str(x) for x in ranking[:10]] if isinstance(ranking, list) else [],
        "pools": {k: pools[k] for k in sorted(pools)[:20]},
        # Each open alert's severity and subject, for the alert digests.
        "alerts": {
            str(k): {"severity": str(v.get("severity")), "subject_id": v.get("subject_id")}
            for k, v in sorted(alerts.items())
        },
    }


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _counted(values: Iterable[Any]) -> dict[str, int]:
    return dict(sorted(Counter(str(v) for v in values).items()))


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


def link(base_url: str, page: str = "overview") -> str:
    return f"{base_url.rstrip('/')}/{page}"


@dataclass(frozen=True)
class Message:
    """One delivery's message, whatever the channel renders it as."""

    event: str
    headline: str
    text: str
    lines: list[tuple[str, str]]
    link: str
    #: What a webhook carries beside the delivery's own fields.
    content: dict[str, Any]


def message(pending: Pending, base_url: str) -> Message:
    if pending.plan.content == sh.Content.ALERT_DIGEST:
        return alert_digest(pending, base_url)
    report = pending.report
    return Message(
        event="PortfolioReportPublished",
        headline=headline(report),
        text=report.rationale,
        lines=lines(report),
        link=link(base_url),
        content={"report": report.model_dump(mode="json")},
    )


def _listed(alerts: Mapping[str, Mapping[str, Any]], ids: Iterable[str]) -> list[dict[str, Any]]:
    """The alerts named, most severe first, at most `DIGEST_LIST` of them."""
    found = sorted(ids, key=lambda k: (SEVERITY_ORDER.get(alerts[k]["severity"], 9), k))
    return [{"alert_id": k, **alerts[k]} for k in found[:DIGEST_LIST]]


def _named(rows: list[dict[str, Any]], total: int) -> str:
    shown = ", ".join(f"{x['alert_id']} ({x['severity']}, {x['subject_id']})" for x in rows)
    more = total - len(rows)
    return (shown + (f" and {more} more" if more > 0 else "")) or "none"


def alert_digest(pending: Pending, base_url: str) -> Message:
    """The alerts open at the publication, and those raised and cleared since the plan's
    previous digest (all of them counted, the first `DIGEST_LIST` of each named)."""
    report = pending.report
    found = report.summary
    open_now: dict[str, dict[str, Any]] = dict(found.get("alerts") or {})
    by_severity: dict[str, int] = dict(found.get("alerts_by_severity") or {})
    count = len(open_now)
    digest_json: dict[str, Any] = {
        "report_id": report.report_id,
        "published_at": report.generated_at.isoformat(),
        "open_alerts": count,
        "by_severity": by_severity,
        "open": _listed(open_now, open_now),
    }
    pairs = [
        ("published", report.generated_at.isoformat()),
        (
            "open alerts",
            f"{count}" + "".join(f", {v} {k}" for k, v in by_severity.items()),
        ),
    ]
    if pending.since is not None:
        before: dict[str, dict[str, Any]] = dict(pending.since.summary.get("alerts") or {})
        raised = [k for k in open_now if k not in before]
        cleared = [k for k in before if k not in open_now]
        digest_json |= {
            "since": pending.since.generated_at.isoformat(),
            "raised_since": len(raised),
            "cleared_since": len(cleared),
            "raised": _listed(open_now, raised),
            "cleared": _listed(before, cleared),
        }
        pairs += [
            ("since", pending.since.generated_at.isoformat()),
            (f"raised since ({len(raised)})", _named(digest_json["raised"], len(raised))),
            (f"cleared since ({len(cleared)})", _named(digest_json["cleared"], len(cleared))),
        ]
    pairs.append((f"open ({count})", _named(digest_json["open"], count)))
    title = f"Alert digest ({report.generated_at:%Y-%m-%d}): {count} open"
    changes = (
        ""
        if pending.since is None
        else f", {digest_json['raised_since']} raised and "
        f"{digest_json['cleared_since']} cleared since the last digest"
    )
    return Message(
        event="AlertDigest",
        headline=title,
        text=f"{count} open alerts{changes}",
        lines=pairs,
        link=link(base_url, "alerts"),
        content={"digest": digest_json},
    )


def webhook_body(pending: Pending, found: Message) -> bytes:
    body = {
        "delivery_id": pending.delivery_id,
        "event": found.event,
        "stakeholder_id": pending.plan.stakeholder_id,
        "plan_id": pending.plan.plan_id,
        "headline": found.headline,
        "link": found.link,
        **found.content,
    }
    return json.dumps(body, sort_keys=True).encode()


def slack_body(found: Message) -> bytes:
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in found.lines[:10]]
    body = {
        "text": f"{found.headline}: {found.text} <{found.link}|open>",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": found.headline[:150]}},
            {"type": "section", "fields": fields},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open"},
                        "url": found.link,
                    }
                ],
            },
        ],
    }
    return json.dumps(body).encode()


def teams_body(found: Message) -> bytes:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": found.headline, "weight": "Bolder"},
            {
                "type": "FactSet",
                "facts": [{"title": k, "value": v} for k, v in found.lines],
            },
        ],
        "actions": [
            {"type": "Action.OpenUrl", "title": "Open in the dashboard", "url": found.link}
        ],
    }
    body = {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }
    return json.dumps(body).encode()


def email_text(found: Message) -> tuple[str, str]:
    text = [f"{k}: {v}" for k, v in found.lines]
    text += ["", f"Dashboard: {found.link}"]
    return found.headline, "\n".join(text) + "\n"


async def send(sender: Sender, settings: NotifySettings, pending: Pending) -> Attempt:
    """One attempt over the plan's channel, with the alert channels' sender."""
    from services.notify.handlers import Attempt  # the sender's own result type

    plan = pending.plan
    try:
        found = message(pending, settings.dashboard_base_url)
    except Exception as error:  # noqa: BLE001 - a summary this version cannot render
        # Dead-lettered with the reason at once, rather than tried again for ever in front
        # of every later delivery.
        reason = f"the message could not be built: {type(error).__name__}: {error}"
        return Attempt(False, None, reason[:500], True)
    json_headers = {"Content-Type": "application/json"}
    try:
        match plan.channel:
            case sh.Channel.WEBHOOK:
                secret = settings.notify_webhook_secrets.get(SECRET_NAME)
                if secret is None:
                    return Attempt(False, None, f"no webhook secret named {SECRET_NAME!r}", True)
                body = webhook_body(pending, found)
                headers = {
                    **json_headers,
                    "X-Hub-Signature-256": subs.signature(secret, body),
                    "X-Portfolio-Delivery": pending.delivery_id,
                    "X-Portfolio-Timestamp": str(int(time.time())),
                    "X-Portfolio-Event": found.event,
                }
                return await sender._post(plan.target, body, headers)
            case sh.Channel.SLACK:
                return await sender._post(plan.target, slack_body(found), json_headers)
            case sh.Channel.TEAMS:
                return await sender._post(plan.target, teams_body(found), json_headers)
            case sh.Channel.EMAIL:
                subject, text = email_text(found)
                return await sender.mail(plan.target, pending.delivery_id, subject, text)
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
        #: Outcomes sent whose record in the log failed, by delivery: recorded, not resent.
        self.unrecorded: dict[tuple[str, str, str], Outcome] = {}
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
            owed = list(self.owed.pending_reports())
            metrics.PLAN_DELIVERIES_OWED.set(len(owed))
            for pending in owed:
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
        """Send, then record the outcome in the log. An outcome sent whose record failed (the
        log did not answer) is recorded on the next try without sending again."""
        outcome = self.unrecorded.get(pending.key)
        if outcome is None:
            outcome = await self._send(pending, now or datetime.now(UTC))
            self.unrecorded[pending.key] = outcome
        await self._record(outcome, pending)
        del self.unrecorded[pending.key]
        self.owed.record_report(outcome, None, None)
        kind = "delivered" if isinstance(outcome, rp.ReportDelivered) else "dead_letter"
        metrics.PLAN_DELIVERIES.labels(str(pending.plan.content), outcome.channel, kind).inc()
        metrics.PLAN_DELIVERIES_OWED.set(len(self.owed.pending_reports()))
        log.info(
            "notify.report_" + kind,
            report=pending.report.report_id,
            stakeholder=pending.plan.stakeholder_id,
            plan=pending.plan.plan_id,
        )

    async def _send(self, pending: Pending, now: datetime) -> Outcome:
        """The delivery's attempts, with back-off, and their outcome."""
        from services.notify.handlers import Attempt

        content, channel = str(pending.plan.content), str(pending.plan.channel)
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
                metrics.PLAN_DELIVERY_RETRIES.labels(content, channel).inc()
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.settings.notify_backoff_max_seconds)
        common = {
            "report_id": pending.report.report_id,
            "stakeholder_id": pending.plan.stakeholder_id,
            "plan_id": pending.plan.plan_id,
            "delivery_id": pending.delivery_id,
            "channel": channel,
            "attempts": attempts,
        }
        if result.ok:
            return rp.ReportDelivered(**common, status=result.status or 0)
        reason = result.detail if result.permanent else f"{attempts} attempts: {result.detail}"
        return rp.ReportDeadLettered(**common, reason=printable(reason)[:1000])

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
