"""The risk monitor's decisions reach the log: after each batch, the alerts decided while it
was applied are appended to the log and published on `portfolio.alerts.*`."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import nats.errors
import structlog
from nats.js import JetStreamContext

from contracts import risks as r
from contracts.base import EventEnvelope
from contracts.subjects import Subjects
from services.risk.projection import Pending, RiskProjection
from shared import chain, tracing
from shared.decisions import decision_envelope
from shared.eventlog import EventLog, append_headers

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
