"""Delivery: one durable consumer on PORTFOLIO_ALERTS per subscription, read one message at
a time (so in order), each alert event sent with retries and backoff, then recorded in the
log as delivered or dead-lettered (with the reason), then acknowledged.

A receiver that is down is retried (1 s, 2 s, 4 s ... up to the configured maximum); the
consumer holds its place meanwhile, so nothing after it overtakes. A notify service that
was down resumes each consumer where it stopped. An outcome already in the log for the
same alert event and subscription is never sent again (a redelivery after a crash between
the send and the acknowledgement is recognised; receivers also get the same delivery id).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

import aiohttp
import aiosmtplib
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import Field, ValidationError

from contracts import notify as n
from contracts.base import FrozenModel
from contracts.subjects import ALERTS_STREAM, Subjects
from domain import subscriptions as subs
from services.notify.projection import NotifyProjection, Subscription
from shared import metrics
from shared.commands import printable
from shared.decisions import append_decision
from shared.eventlog import ConcurrencyConflict, EventLog
from shared.service import answer, invalid_query
from shared.settings import NotifySettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Attempt:
    ok: bool
    #: HTTP status (250 for SMTP) when there was an answer.
    status: int | None
    detail: str
    #: Retrying cannot help (e.g. 404, 410, a malformed target): dead-letter at once.
    permanent: bool = False


class Sender:
    """One attempt over one channel."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.notify_timeout_seconds)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, sub: n.Subscribed, delivery: str, alert: dict[str, Any]) -> Attempt:
        base = self.settings.dashboard_base_url
        try:
            match sub.channel:
                case n.Channel.WEBHOOK:
                    secret = self.settings.notify_webhook_secrets.get(sub.secret_ref or "")
                    if secret is None:
                        return Attempt(False, None, f"no secret named {sub.secret_ref!r}", True)
                    body = subs.webhook_body(sub.subscription_id, delivery, alert, base)
                    headers = {
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": subs.signature(secret, body),
                        "X-Portfolio-Delivery": delivery,
                        "X-Portfolio-Timestamp": str(int(time.time())),
                        "X-Portfolio-Event": str(alert.get("event")),
                    }
                    return await self._post(sub.target, body, headers)
                case n.Channel.SLACK:
                    headers = {"Content-Type": "application/json"}
                    return await self._post(sub.target, subs.slack_body(alert, base), headers)
                case n.Channel.TEAMS:
                    headers = {"Content-Type": "application/json"}
                    return await self._post(sub.target, subs.teams_body(alert, base), headers)
                case n.Channel.EMAIL:
                    return await self._mail(sub.target, delivery, alert)
        except (aiohttp.ClientError, aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return Attempt(False, None, f"{type(error).__name__}: {error}"[:500])
        except ValueError as error:  # a target or content no retry can fix: dead-lettered
            return Attempt(False, None, f"{type(error).__name__}: {error}"[:500], True)
        return Attempt(False, None, f"unknown channel {sub.channel}", True)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        session = await self.session()
        async with session.post(url, data=body, headers=headers) as response:
            text = (await response.text(errors="replace"))[:200]
            if 200 <= response.status < 300:
                return Attempt(True, response.status, text)
            permanent = 400 <= response.status < 500 and response.status not in (408, 425, 429)
            return Attempt(False, response.status, f"HTTP {response.status}: {text}", permanent)

    async def _mail(self, to: str, delivery: str, alert: dict[str, Any]) -> Attempt:
        subject, text = subs.email_text(alert, self.settings.dashboard_base_url)
        return await self.mail(to, delivery, subject, text)

    async def mail(self, to: str, delivery: str, subject: str, text: str) -> Attempt:
        """One mail over SMTP (an alert's, a report's or a digest's)."""
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = to
        message["Subject"] = mail_header(subject)
        message["X-Portfolio-Delivery"] = delivery
        message.set_content(printable(text))  # a lone surrogate, as its escape
        settings = self.settings
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


#: What an alert's delivery to a subscription comes to, recorded under its subscription.
AlertOutcome = n.AlertDelivered | n.AlertDeadLettered
#: An alert's own text kept in its delivery's outcome is cut to this many characters.
OUTCOME_TEXT_LIMIT = 256


def outcome_text(value: object) -> str:
    """An alert's field (any JSON, from the stream) as the outcome in the log keeps it:
    encodable, and short enough that the outcome is never too big to append."""
    return printable("" if value is None else str(value))[:OUTCOME_TEXT_LIMIT]


#: A mail's subject is cut to this many characters.
SUBJECT_LIMIT = 200


def mail_header(text: str) -> str:
    """A header's value from any text: line breaks and other control characters (a header
    of their own, to a mail library) become spaces, and what UTF-8 cannot encode (a lone
    surrogate, which JSON's escapes allow) its escape."""
    flat = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in printable(text))
    return flat[:SUBJECT_LIMIT]


def consumer_name(sub: n.Subscribed) -> str:
    digest = hashlib.sha256(f"{sub.subscription_id}\x1f{sub.revision}".encode()).hexdigest()
    return f"notify-{digest[:20]}"


class SubscriptionWorker:
    """Delivers one subscription's alerts, in order, from its own durable consumer."""

    def __init__(
        self,
        subscription: Subscription,
        js: JetStreamContext,
        event_log: EventLog,
        subjects: Subjects,
        projection: NotifyProjection,
        sender: Sender,
        settings: NotifySettings,
        unrecorded: dict[tuple[str, str], AlertOutcome] | None = None,
    ) -> None:
        self.sub = subscription.state.subscribed
        #: Outcomes sent whose record in the log failed, by (subscription, alert event):
        #: shared by the workers, so a worker replaced meanwhile does not send again.
        self.unrecorded = {} if unrecorded is None else unrecorded
        self.since = subscription.since
        self.js = js
        self.event_log = event_log
        self.subjects = subjects
        self.projection = projection
        self.sender = sender
        self.settings = settings
        self.task: asyncio.Task[None] | None = None
        self.stopping = False

    async def start(self) -> None:
        name = consumer_name(self.sub)
        config = ConsumerConfig(
            durable_name=name,
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=self.since,
            ack_policy=AckPolicy.EXPLICIT,
            # Retries happen here, holding the message (in_progress keeps it ours).
            ack_wait=max(30.0, self.settings.notify_timeout_seconds * 3),
            max_ack_pending=1,
            filter_subject=self.subjects.alerts_all,
        )
        try:
            await self.js.consumer_info(ALERTS_STREAM, name)
        except NotFoundError:
            await self.js.add_consumer(ALERTS_STREAM, config)
        self.pull = await self.js.pull_subscribe_bind(name, stream=ALERTS_STREAM)
        self.task = asyncio.create_task(self._run(), name=f"notify:{self.sub.subscription_id}")

    async def stop(self, delete: bool = False) -> None:
        self.stopping = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self.task, 5)
        with contextlib.suppress(Exception):
            await self.pull.unsubscribe()
        if delete:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(ALERTS_STREAM, consumer_name(self.sub))

    async def _run(self) -> None:
        while not self.stopping:
            try:
                msgs = await self.pull.fetch(1, timeout=1.0)
            except TimeoutError:
                continue
            except Exception:  # the loop outlives any failure (logged)
                log.exception("notify.fetch_failed", subscription=self.sub.subscription_id)
                await asyncio.sleep(1)
                continue
            for msg in msgs:
                try:
                    await self.handle(msg)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        await msg.nak()
                    raise
                except Exception:  # redelivered after a pause; the loop goes on (logged)
                    log.exception("notify.handle_failed", subscription=self.sub.subscription_id)
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=self.settings.notify_backoff_seconds)

    async def handle(self, msg: Msg) -> None:
        sub_id = self.sub.subscription_id
        try:
            alert = json.loads(msg.data)
            if not isinstance(alert, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as error:
            log.warning("notify.malformed_alert", subscription=sub_id, error=str(error))
            await msg.term()
            return
        # As any text from the stream, made encodable (a lone surrogate is valid JSON): the
        # id names the delivery and its outcome in the log.
        event_id = outcome_text(alert.get("event_id") or (msg.headers or {}).get("Nats-Msg-Id"))
        if not event_id or (sub_id, event_id) in self.projection.done:
            await msg.ack()
            return
        if not subs.matches(self.sub, alert):
            await msg.ack()
            return
        # An outcome sent whose record in the log failed (the message came back) is
        # recorded now, not sent again.
        key = (sub_id, event_id)
        outcome = self.unrecorded.get(key)
        if outcome is None:
            outcome = await self._send(msg, alert, event_id)
            self.unrecorded[key] = outcome
        await self._record(outcome)
        del self.unrecorded[key]
        self.projection.record(outcome, None, None)
        await msg.ack()
        kind = "delivered" if isinstance(outcome, n.AlertDelivered) else "dead_letter"
        metrics.DELIVERIES.labels(self.sub.channel, kind).inc()
        log.info(
            "notify." + kind,
            subscription=sub_id,
            alert=outcome.alert_id,
            attempts=outcome.attempts,
        )

    async def _send(self, msg: Msg, alert: dict[str, Any], event_id: str) -> AlertOutcome:
        """The alert's attempts over the subscription's channel, with back-off (the message
        kept in progress meanwhile), and their outcome."""
        sub_id = self.sub.subscription_id
        delivery = subs.delivery_id(sub_id, event_id)
        attempts, result = 0, Attempt(False, None, "not tried")
        wait = self.settings.notify_backoff_seconds
        while True:
            attempts += 1
            result = await self.sender.send(self.sub, delivery, alert)
            if result.ok or result.permanent or attempts >= self.settings.notify_max_attempts:
                break
            log.info("notify.retry", subscription=sub_id, attempt=attempts, detail=result.detail)
            metrics.DELIVERY_RETRIES.labels(self.sub.channel).inc()
            await msg.in_progress()
            await asyncio.sleep(wait)
            await msg.in_progress()
            wait = min(wait * 2, self.settings.notify_backoff_max_seconds)
        common = {
            "subscription_id": sub_id,
            "delivery_id": delivery,
            "alert_event_id": event_id,
            "alert_id": outcome_text(alert.get("alert_id")),
            "event_type": outcome_text(alert.get("event")),
            "channel": self.sub.channel,
            "attempts": attempts,
        }
        if result.ok:
            return n.AlertDelivered(**common, status=result.status or 0)
        reason = result.detail if result.permanent else f"{attempts} attempts: {result.detail}"
        return n.AlertDeadLettered(**common, reason=printable(reason)[:1000])

    async def _record(self, outcome: FrozenModel) -> None:
        identity = f"{self.sub.subscription_id}/{getattr(outcome, 'alert_event_id', '')}"
        for attempt in range(10):
            try:
                await append_decision(
                    self.event_log,
                    (n.DELIVERY, self.sub.subscription_id),
                    outcome,
                    identity,
                    None,
                    actor="notify",
                    source="notify",
                )
                return
            except ConcurrencyConflict:
                if attempt == 9:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))


class Deliveries:
    """Keeps one worker per active subscription (a replaced subscription gets a new one)."""

    def __init__(self, settings: NotifySettings, projection: NotifyProjection) -> None:
        self.settings = settings
        self.projection = projection
        self.sender = Sender(settings)
        self.workers: dict[str, SubscriptionWorker] = {}
        self.unrecorded: dict[tuple[str, str], AlertOutcome] = {}
        self.lock = asyncio.Lock()
        self.js: JetStreamContext | None = None
        self.event_log: EventLog | None = None

    async def sync(self) -> None:
        if not self.projection.changed or self.js is None or self.event_log is None:
            return
        async with self.lock:
            self.projection.changed = False
            wanted = self.projection.active()
            for sub_id, worker in list(self.workers.items()):
                found = wanted.get(sub_id)
                if found is None or found.state.subscribed != worker.sub:
                    await worker.stop(delete=True)
                    del self.workers[sub_id]
            for sub_id, found in sorted(wanted.items()):
                if sub_id not in self.workers:
                    worker = SubscriptionWorker(
                        found,
                        self.js,
                        self.event_log,
                        self.settings.subjects,
                        self.projection,
                        self.sender,
                        self.settings,
                        self.unrecorded,
                    )
                    await worker.start()
                    self.workers[sub_id] = worker

    async def stop(self) -> None:
        for worker in self.workers.values():
            await worker.stop()
        self.workers = {}
        await self.sender.close()


class DeliveriesQuery(FrozenModel):
    """Delivery outcomes, newest last: of one subscription, of one kind, at most `limit`."""

    subscription_id: str | None = Field(default=None, max_length=128)
    outcome: Literal["delivered", "dead_letter"] | None = None
    limit: int = Field(default=100, ge=1, le=10_000)


def deliveries_query(projection: NotifyProjection, body: bytes) -> bytes:
    try:
        query = DeliveriesQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        return answer(invalid_query("deliveries", error))
    found = [
        x
        for x in projection.outcomes
        if (query.subscription_id is None or x["subscription_id"] == query.subscription_id)
        and (query.outcome is None or x["outcome"] == query.outcome)
    ]
    subscriptions = [
        {
            **s.state.subscribed.model_dump(mode="json"),
            "active": s.state.active,
            "since": s.since.isoformat(),
        }
        for _, s in sorted(projection.subscriptions.items())
    ]
    reports = [
        x
        for x in projection.report_outcomes
        if query.outcome is None or x["outcome"] == query.outcome
    ]
    body_out = {
        "deliveries": found[-query.limit :],
        "subscriptions": subscriptions,
        # Published reports sent to the stakeholders' communication plans.
        "report_deliveries": reports[-query.limit :],
        "reports_owed": len(projection.owed),
    }
    return json.dumps(body_out).encode()
