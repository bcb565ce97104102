"""The risk monitor's decisions and queries. After each batch: the alerts decided while it
was applied, appended to the log and published on `portfolio.alerts.*`; on request: open
alerts (with their current values), the risk register, project health, a rule's backtest."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from typing import Any

import nats.errors
import structlog
from nats.js import JetStreamContext
from pydantic import ValidationError

from contracts import risks as r
from contracts.base import EventEnvelope, FrozenModel
from contracts.queries import QueryError
from contracts.registry import parse_payload
from contracts.subjects import Subjects
from domain.risk import DEFAULT_ZONES, alerts, contingency
from domain.risk.monitor import AlertMonitor
from services.risk.projection import INPUT_TYPES, Pending, RiskProjection, open_alerts
from shared import chain, tracing
from shared.decisions import decision_envelope
from shared.eventlog import EventLog, append_headers
from shared.service import answer, invalid_query

log = structlog.get_logger(__name__)


#: Seconds an alert's append or publication waits for its ack before the careful path
#: (`EventLog.append`: retried with the same message id, conflicts recognised).
ACK_SECONDS = 2.0
#: At most this many appends (or publications) in flight: a flush after a long outage may
#: hold thousands.
WINDOW = 256


@dataclass
class _Append:
    """One alert event sent to the log, its ack awaited later."""

    item: Pending
    envelope: EventEnvelope
    expected: int
    previous_link: str
    sealed: str
    ack: asyncio.Future[tuple[int, bool]]


class AlertFlusher:
    """Appends the alert events the monitor decided, in order, then publishes each on
    `<prefix>.alerts.<severity>.<metric>` (stream PORTFOLIO_ALERTS, for subscribers that
    were offline). One flush at a time: after every batch, and once at start (what a
    crash left decided but not appended).

    The appends of a flush are pipelined: each is sent as soon as its aggregate's expected
    position and previous chain link are known, the acks gathered after (in the order
    sent, which is the log's order: one connection, one stream). An alert's events chain
    one after the other, so an event whose alert has an append in flight waits for its
    ack; the link of an event appended here is the one it was sealed with, so it is never
    read back. An aggregate this flusher has not appended to is asked where it ends (all
    of them at once, before anything is sent), as `append_decision` asks. An append
    without an ack in time, refused, or whose previous link is not known (an earlier
    attempt's duplicate, an aggregate that already had events) goes the careful way,
    `EventLog.append`, alone. The publications are pipelined the same way."""

    def __init__(
        self,
        event_log: EventLog,
        js: JetStreamContext,
        subjects: Subjects,
        projection: RiskProjection,
    ) -> None:
        self.event_log = event_log
        self.js = js
        self.subjects = subjects
        self.projection = projection
        self.lock = asyncio.Lock()
        #: Where this flusher appended the last event of each open alert's aggregate: the
        #: position its next event (a revision, the clear) expects, without asking the log.
        self.last_appended: dict[str, int] = {}
        #: The chain link of that event (as sealed here; absent: not known).
        self.last_link: dict[str, str] = {}

    async def flush(self) -> int:
        async with self.lock:
            items = list(self.projection.pending.values())
            if not items:
                return 0
            await self._append_all([item for item in items if not item.appended])
            return await self._publish_all(items)

    # --- appending ---------------------------------------------------------------------------

    async def _append_all(self, todo: list[Pending]) -> None:
        if not todo:
            return
        acks = self.event_log.acks
        # Where each aggregate this flusher knows nothing about ends, asked at once.
        unknown = list(
            dict.fromkeys(
                item.event.alert_id
                for item in todo
                if item.event.alert_id not in self.last_appended
            )
        )
        ends = await asyncio.gather(
            *(self.event_log.last_position_of(r.ALERT, alert_id) for alert_id in unknown)
        )
        #: This flush's view of each aggregate it appends to: its last position and link
        #: ("": not known), kept after a clear too (an event after it expects it).
        position: dict[str, int] = dict(zip(unknown, ends, strict=True))
        link: dict[str, str] = {a: chain.GENESIS for a, end in position.items() if end == 0}
        for alert_id in position.keys() - link.keys():
            link[alert_id] = ""
        sent: list[_Append] = []
        busy: set[str] = set()
        try:
            for item in todo:
                alert_id = item.event.alert_id
                if alert_id in busy or len(sent) >= WINDOW:
                    await self._settle(sent, position, link)
                    busy.clear()
                expected = position.get(alert_id, self.last_appended.get(alert_id, 0))
                previous = (
                    link[alert_id] if alert_id in position else self.last_link.get(alert_id, "")
                )
                envelope = self._envelope(item)
                if acks is None or (expected and not previous):
                    # No connection of the log's own, or a link to read: the careful way.
                    await self._settle(sent, position, link)
                    busy.clear()
                    appended = await self.event_log.append(
                        envelope, expected, previous_link=previous or None
                    )
                    self._landed(item, appended.position, appended.link, position, link)
                    continue
                subject = self.subjects.events(r.ALERT, alert_id)
                headers = tracing.inject(append_headers(envelope, expected))
                unsealed = envelope.model_dump_json(exclude={chain.FIELD}).encode()
                data, sealed = chain.seal(unsealed, previous)
                ack = await acks.send(subject, data, headers)
                sent.append(_Append(item, envelope, expected, previous, sealed, ack))
                busy.add(alert_id)
            await self._settle(sent, position, link)
        finally:
            for pending in sent:
                pending.ack.cancel()

    async def _settle(
        self, sent: list[_Append], position: dict[str, int], link: dict[str, str]
    ) -> None:
        """The acks of what was sent, in order; the careful way for one that has none."""
        loop = asyncio.get_running_loop()
        while sent:
            one = sent[0]
            expiry = loop.call_later(ACK_SECONDS, _expire, one.ack)
            try:
                seq, duplicate = await one.ack
                landed = (seq, "" if duplicate else one.sealed)
            except Exception:  # noqa: BLE001 - retried by the append that handles each case
                appended = await self.event_log.append(
                    one.envelope, one.expected, previous_link=one.previous_link
                )
                landed = (appended.position, appended.link)
            finally:
                expiry.cancel()
            sent.pop(0)
            self._landed(one.item, landed[0], landed[1], position, link)

    def _landed(
        self,
        item: Pending,
        at: int,
        sealed: str,
        position: dict[str, int],
        link: dict[str, str],
    ) -> None:
        event = item.event
        item.appended, item.position = True, at
        position[event.alert_id], link[event.alert_id] = at, sealed
        if isinstance(event, r.AlertCleared):
            self.last_appended.pop(event.alert_id, None)
            self.last_link.pop(event.alert_id, None)
        else:
            self.last_appended[event.alert_id] = at
            self.last_link[event.alert_id] = sealed

    def _envelope(self, item: Pending) -> EventEnvelope:
        return decision_envelope(
            (r.ALERT, item.event.alert_id),
            item.event,
            item.identity,
            item.cause,
            actor="risk",
            source="risk",
        )

    # --- publishing --------------------------------------------------------------------------

    async def _publish_all(self, items: list[Pending]) -> int:
        """Each appended alert on the alerts stream, in order; an alert leaves the pending
        list once its publication is acked."""
        acks = self.event_log.acks
        done = 0
        sent: list[tuple[Pending, asyncio.Future[tuple[int, bool]]]] = []
        try:
            for item in items:
                subject, body, headers = self._publication(item)
                if acks is None:
                    await self.js.publish(subject, body, headers=headers)
                    done += self._published(item)
                else:
                    sent.append((item, await acks.send(subject, body, headers)))
                    if len(sent) >= WINDOW:
                        done += await self._published_all(sent)
            done += await self._published_all(sent)
        finally:
            for _, ack in sent:
                ack.cancel()
        return done

    async def _published_all(
        self, sent: list[tuple[Pending, asyncio.Future[tuple[int, bool]]]]
    ) -> int:
        """The acks of the publications sent, in order; one without is published again."""
        done = 0
        loop = asyncio.get_running_loop()
        while sent:
            item, ack = sent[0]
            expiry = loop.call_later(ACK_SECONDS, _expire, ack)
            try:
                await ack
            except Exception:  # noqa: BLE001 - published again (stored once), waited for
                subject, body, headers = self._publication(item)
                await self.js.publish(subject, body, headers=headers)
            finally:
                expiry.cancel()
            sent.pop(0)
            done += self._published(item)
        return done

    def _publication(self, item: Pending) -> tuple[str, bytes, dict[str, str]]:
        event = item.event
        body = {
            "event": type(event).__name__,
            "event_id": item.event_id,
            "position": item.position,
            **event.model_dump(mode="json"),
        }
        return (
            self.subjects.alert(str(event.severity), str(event.metric)),
            json.dumps(body).encode(),
            {"Nats-Msg-Id": item.event_id, "Portfolio-Position": str(item.position)},
        )

    def _published(self, item: Pending) -> int:
        event = item.event
        self.projection.pending.pop(item.event_id, None)
        log.info("alert." + type(event).__name__, alert=event.alert_id, subject=event.subject_id)
        return 1

    async def start(self) -> None:
        await self.flush()

    async def stop(self) -> None:
        return None


def _expire(future: asyncio.Future[tuple[int, bool]]) -> None:
    if not future.done():
        future.set_exception(nats.errors.TimeoutError())


def alerts_query(projection: RiskProjection) -> bytes:
    return json.dumps({"open": open_alerts(projection)}).encode()


def register_query(projection: RiskProjection) -> bytes:
    risks = sorted(projection.monitor.risks.values(), key=lambda x: x.risk_id)
    reserve = contingency(risks)
    body: dict[str, Any] = {
        "risks": [
            {
                "risk_id": x.risk_id,
                "project_id": x.project_id,
                "title": x.title,
                "kind": str(x.kind),
                "owner": x.owner,
                "open": x.is_open,
                "score": x.score,
                "current_score": x.current_score,
                "zone": str(DEFAULT_ZONES.zone(x.current_score)),
                "emv": str(x.emv()),
            }
            for x in risks
        ],
        "contingency": {
            "reserve": str(reserve.reserve),
            "opportunities": str(reserve.opportunities),
            "threats_by_project": {
                (k or "portfolio"): str(v) for k, v in reserve.threats_by_project.items()
            },
        },
    }
    return json.dumps(body).encode()


def health_query(projection: RiskProjection) -> bytes:
    monitor = projection.monitor
    overall, closed = monitor.portfolio_health()

    def one(project_id: str) -> dict[str, Any] | None:
        health = monitor.health(project_id)
        if health is None:
            return None
        return {
            "status": str(health.status),
            "explain": health.explain(),
            "earned_value": health.earned_value.figures() if health.earned_value else None,
        }

    closed_ids = {h.subject_id for h in closed}
    found = {
        pid: body
        for pid in sorted(monitor.baselines)
        if pid not in closed_ids and (body := one(pid)) is not None
    }
    programmes = {
        child.subject_id: {"status": str(child.status), "explain": child.explain()}
        for child in overall.children
        if child.level == "programme"
    }
    body = {
        "portfolio": {"status": str(overall.status), "explain": overall.explain()},
        "programmes": programmes,
        "projects": found,
        #: Completed and cancelled projects: reported, never rolled up.
        "closed_projects": {
            h.subject_id: (one(h.subject_id) or {})
            | {"project_status": str(monitor.projects[h.subject_id].status)}
            for h in closed
        },
    }
    return json.dumps(body).encode()


class BacktestQuery(FrozenModel):
    """A rule to try against the whole history: how often would it have fired, and when."""

    metric: r.Metric
    comparison: r.Comparison
    threshold: float
    clear_at: float


async def backtest_query(event_log: EventLog, body: bytes) -> bytes:
    """The candidate rule run over the whole history by the same monitor as the live one
    (every other rule left out): when it would have raised and cleared, per subject."""
    try:
        rule = BacktestQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        return answer(invalid_query("backtest", error))
    if not alerts.clears(rule, rule.clear_at) or alerts.holds(rule, rule.clear_at):
        return answer(QueryError(error="clear_at must be on the other side of the threshold"))
    monitor = AlertMonitor()
    candidate = replace(
        alerts.default_rules()[0],
        rule_id="backtest",
        metric=rule.metric,
        comparison=rule.comparison,
        threshold=rule.threshold,
        clear_at=rule.clear_at,
        severity=r.Severity.INFO,
    )
    monitor.rules = {"backtest": candidate}
    # When it would have fired by business time (the facts' occurred_at, which is what a
    # portfolio manager asks about) and by recorded time (when the backend learned them).
    opened: dict[str, tuple[str, str]] = {}
    episodes: list[dict[str, Any]] = []
    async for recorded in event_log.read():
        e = recorded.envelope
        if e.event_type not in INPUT_TYPES or e.aggregate_type == r.ALERT_RULE:
            continue
        try:
            event = parse_payload(e.event_type, e.payload, e.schema_version)
            decided = monitor.fold(event, e.event_id, recorded.position)
        except (ValueError, KeyError, AttributeError):
            continue
        at = (e.occurred_at.isoformat(), e.recorded_at.isoformat())
        for found in decided:
            if isinstance(found, r.AlertRaised):
                opened[found.subject_id] = at
            elif isinstance(found, r.AlertCleared):
                episodes.append(_episode(found.subject_id, opened.pop(found.subject_id), at))
    episodes += [_episode(s, at, None) for s, at in opened.items()]
    episodes.sort(key=lambda x: (x["subject_id"], x["raised_at"], x["recorded_raised_at"]))
    return json.dumps({"fired": len(episodes), "episodes": episodes}).encode()


def _episode(
    subject_id: str, raised: tuple[str, str], cleared: tuple[str, str] | None
) -> dict[str, Any]:
    return {
        "subject_id": subject_id,
        "raised_at": raised[0],
        "cleared_at": None if cleared is None else cleared[0],
        "recorded_raised_at": raised[1],
        "recorded_cleared_at": None if cleared is None else cleared[1],
    }
