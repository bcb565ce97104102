"""The event log on NATS JetStream: one stream, one subject per aggregate.

Appends use `Nats-Expected-Last-Subject-Sequence` (one writer per aggregate) and
`Nats-Msg-Id` (a retried append is stored once), seal each event into the hash chain
(shared/chain.py) and wait out an election for a time budget (`patience`). Reads use
short-lived pull consumers and run to the position the log ended at when they began: a
fetch that times out before it is retried, never taken for the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError, ServiceUnavailableError

from contracts.base import EventEnvelope, RecordedEvent
from contracts.subjects import (
    ALERTS_STREAM,
    INBOX_STREAM,
    LOG_STREAM,
    REJECTIONS_STREAM,
    RESULTS_STREAM,
    Subjects,
)
from shared import chain, tracing
from shared.pull import BatchPuller, position_of, stored_at

log = structlog.get_logger(__name__)
T = TypeVar("T")

WRONG_LAST_SEQUENCE = 10071
HEADER_EVENT_TYPE = "Portfolio-Event-Type"


def append_headers(envelope: EventEnvelope, expected_last_position: int) -> dict[str, str]:
    """What every append carries: the event id as message id (a retry is stored once) and
    the aggregate's expected last position (one writer per aggregate)."""
    return {
        "Nats-Msg-Id": envelope.event_id,
        "Nats-Expected-Last-Subject-Sequence": str(expected_last_position),
        "Nats-Expected-Stream": LOG_STREAM,
        HEADER_EVENT_TYPE: envelope.event_type,
    }


class ConcurrencyConflict(Exception):
    """Another writer appended to the aggregate after the state the decision was based on."""

    def __init__(self, subject: str, expected: int, detail: str) -> None:
        super().__init__(f"{subject}: expected last position {expected}: {detail}")
        self.subject = subject
        self.expected = expected


class WeakStreamConfig(RuntimeError):
    """The stream exists with a configuration that could lose or rewrite history."""


@dataclass(frozen=True)
class Appended:
    position: int
    duplicate: bool
    #: The stored event's chain link ("" when it is an earlier attempt's, not read here).
    link: str = ""


def log_stream_config(
    subjects: Subjects, duplicate_window: float, replicas: int = 1
) -> StreamConfig:
    return StreamConfig(
        name=LOG_STREAM,
        description="The portfolio's append-only event log",
        subjects=[subjects.events_all],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,
        max_msgs_per_subject=-1,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        duplicate_window=duplicate_window,
        num_replicas=replicas,
    )


def rejections_stream_config(subjects: Subjects) -> StreamConfig:
    return StreamConfig(
        name=REJECTIONS_STREAM,
        description="Inputs intake refused, with the raw input and the reason",
        subjects=[subjects.rejections_all],
        storage=StorageType.FILE,
        deny_delete=True,
        deny_purge=True,
    )


def inbox_stream_config(subjects: Subjects) -> StreamConfig:
    """Fire-and-forget commands wait here, even while intake is down; each is removed once
    intake has answered it (the log, not the inbox, is the record)."""
    return StreamConfig(
        name=INBOX_STREAM,
        description="Commands sent fire-and-forget, waiting for intake",
        # `<prefix>.inbox.<Command>`, and `.<principal>` after it (services/intake/principals.py)
        subjects=[subjects.inbox_all, f"{subjects.inbox_all}.*"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=120.0,
    )


def results_stream_config(subjects: Subjects) -> StreamConfig:
    """The answer to each inbox command, kept a week under its command id."""
    return StreamConfig(
        name=RESULTS_STREAM,
        description="Outcomes of inbox commands, by command id",
        subjects=[subjects.results_all],
        storage=StorageType.FILE,
        max_msgs_per_subject=1,
        max_age=7 * 24 * 3600.0,
        allow_direct=True,
    )


def alerts_stream_config(subjects: Subjects) -> StreamConfig:
    """Alerts as they are raised and cleared, kept a year so that a subscriber that was
    offline gets every one it missed (the log keeps them for ever)."""
    return StreamConfig(
        name=ALERTS_STREAM,
        description="Alerts raised and cleared, by severity and kind",
        subjects=[subjects.alerts_all],
        storage=StorageType.FILE,
        max_age=365 * 24 * 3600.0,
        duplicate_window=120.0,
    )


def weaknesses(config: StreamConfig, replicas: int = 1) -> list[str]:
    """Everything about a found log stream that would let history be lost or rewritten."""
    found = []
    if (config.num_replicas or 1) < replicas:
        found.append(f"{config.num_replicas} replica(s), not {replicas}")
    if config.storage != StorageType.FILE:
        found.append(f"storage is {config.storage}, not file")
    if not config.deny_delete:
        found.append("deny_delete is off")
    if not config.deny_purge:
        found.append("deny_purge is off")
    if config.allow_rollup_hdrs:
        found.append("rollups are allowed")
    if config.retention != RetentionPolicy.LIMITS:
        found.append(f"retention is {config.retention}, not limits")
    for limit in ("max_msgs", "max_bytes", "max_msgs_per_subject"):
        value = getattr(config, limit)
        if value is not None and value > 0:
            found.append(f"{limit} is {value}")
    if config.max_age:
        found.append(f"max_age is {config.max_age}")
    if not config.duplicate_window:
        found.append("no duplicate window")
    return found


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig, verify: bool) -> StreamInfo:
    # `verify`: check the found stream against the log's guarantees (replicas included).
    """Create the stream, or check the one found; a weaker log is a start-up error."""
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        try:
            return await js.add_stream(wanted)
        except APIError:
            # Another process created it first: fall through to verifying theirs.
            info = await js.stream_info(wanted.name)
    if verify:
        problems = weaknesses(info.config, wanted.num_replicas or 1)
        if problems:
            raise WeakStreamConfig(f"stream {wanted.name}: " + "; ".join(problems))
    return info


class PublishAcks:
    """JetStream publishes whose acks come back on one subscription of this process's own.

    What `JetStreamContext.publish` does, for less per message (it is on every command's
    path): nats-py's request draws random bytes from the OS per request and wraps the
    wait in `asyncio.wait_for`; here a counter names each reply subject and one timer
    bounds the wait. The answers are the same: an ack (stream sequence, duplicate), an
    `APIError` from the server, `NoStreamResponseError` when no stream listens,
    `nats.errors.TimeoutError` when nothing answers in time."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[tuple[int, bool]]] = {}
        self._next = 0
        self._started: asyncio.Future[None] | None = None

    async def _start(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                prefix = f"{self._nc.new_inbox()}."
                await self._nc.subscribe(f"{prefix}*", cb=self._answered)
            except BaseException as error:
                self._started.set_exception(error)
                self._started.exception()  # retrieved: the caller gets it raised
                self._started = None
                raise
            self._prefix = prefix
            self._started.set_result(None)
        await self._started

    async def send(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[tuple[int, bool]]:
        """Publish; the future is the ack: (stream sequence, duplicate), or the error.
        Cancelling it forgets the publish (a late ack is then ignored)."""
        if not self._prefix:
            await self._start()
        self._next += 1
        token = str(self._next)
        future: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        future.add_done_callback(lambda _: self._waiting.pop(token, None))
        try:
            await self._nc.publish(subject, data, reply=self._prefix + token, headers=headers)
        except BaseException:
            future.cancel()
            raise
        return future

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None, timeout: float
    ) -> tuple[int, bool]:
        """Publish and wait for the ack, at most `timeout` seconds."""
        future = await self.send(subject, data, headers)
        expiry = asyncio.get_running_loop().call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            expiry.cancel()

    async def _answered(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":  # no stream listens
            future.set_exception(NoStreamResponseError())
            return
        try:
            answer = json.loads(msg.data)
            if "error" in answer:
                APIError.from_error(answer["error"])  # raises the error's own class
            future.set_result((int(answer["seq"]), bool(answer.get("duplicate"))))
        except Exception as error:  # noqa: BLE001 - the publisher gets it raised
            future.set_exception(error)


def _expire(future: asyncio.Future[tuple[int, bool]]) -> None:
    if not future.done():
        future.set_exception(nats.errors.TimeoutError())


class LogUnavailable(Exception):
    """The log did not answer within the patience: nothing is known to have been written
    (an append) or the read could not reach its end. Try again after `retry_after`."""

    def __init__(self, what: str, waited: float, retry_after: float = 2.0) -> None:
        super().__init__(f"{what}: the log did not answer for {waited:.1f} s")
        self.waited = waited
        self.retry_after = retry_after


#: What a server that is paused, restarting or electing a stream leader answers, if at all.
UNANSWERED = (
    TimeoutError,
    nats.errors.NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
)


class EventLog:
    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        duplicate_window: float = 120.0,
        replicas: int = 1,
        patience: float = 20.0,
        nc: Client | None = None,
    ) -> None:
        self.js = js
        #: Given the connection, appends wait for their acks on a subscription of their own
        #: (`PublishAcks`); without it, through `js.publish`.
        self.acks = PublishAcks(nc) if nc is not None else None
        self.subjects = subjects
        self.duplicate_window = duplicate_window
        self.replicas = replicas
        #: Seconds an append or a read keeps retrying a server that does not answer.
        self.patience = patience

    async def ensure_streams(self) -> None:
        await ensure_stream(
            self.js,
            log_stream_config(self.subjects, self.duplicate_window, self.replicas),
            verify=True,
        )
        for config in (
            rejections_stream_config(self.subjects),
            inbox_stream_config(self.subjects),
            results_stream_config(self.subjects),
            alerts_stream_config(self.subjects),
        ):
            # As many replicas as the log: intake's inbox or the alerts must not die with a node.
            await ensure_stream(self.js, config.evolve(num_replicas=self.replicas), verify=False)

    async def append(
        self,
        envelope: EventEnvelope,
        expected_last_position: int,
        previous_link: str | None = None,
    ) -> Appended:
        """Append one event to its aggregate's subject, if the aggregate is still as expected.

        The envelope is sealed into the hash chain (shared/chain.py) after `previous_link`,
        the link of the aggregate's event at `expected_last_position` (read from the log
        when not given). Safe to retry: the event id is the message id, and a conflict
        whose last message is our own event is recognised as the earlier attempt having
        landed. A server that does not answer (an election takes seconds) is retried with
        the same message id for `patience` seconds, then `LogUnavailable` is raised.
        """
        subject = self.subjects.events(envelope.aggregate_type, envelope.aggregate_id)
        # The trace context of the command appending it, when tracing is on (tracing.py).
        headers = tracing.inject(append_headers(envelope, expected_last_position))
        deadline = time.monotonic() + self.patience
        if previous_link is None:
            previous_link = await self._patiently(
                lambda: self.link_at(expected_last_position), deadline, subject
            )
        unsealed = envelope.model_dump_json(exclude={chain.FIELD}).encode()
        data, sealed = chain.seal(unsealed, previous_link)
        attempt = 0
        while True:
            attempt += 1
            try:
                wait = max(0.1, min(2.0, deadline - time.monotonic()))
                if self.acks is not None:
                    seq, duplicate = await self.acks.publish(subject, data, headers, wait)
                else:
                    ack = await self.js.publish(subject, data, headers=headers, timeout=wait)
                    seq, duplicate = ack.seq, bool(ack.duplicate)
                return Appended(seq, duplicate, "" if duplicate else sealed)
            except UNANSWERED:
                # No answer, or no stream leader while a cluster elects one: retried with the
                # same message id, so an attempt that did land is not stored twice.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LogUnavailable(f"append to {subject}", self.patience) from None
                log.warning("append.retry", subject=subject, attempt=attempt)
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0, remaining))
            except APIError as error:
                if error.err_code != WRONG_LAST_SEQUENCE:
                    raise
                landed = await self._patiently(
                    lambda: self._our_last_message(subject, envelope.event_id), deadline, subject
                )
                if landed is not None:
                    return Appended(position=landed, duplicate=True)
                raise ConcurrencyConflict(
                    subject, expected_last_position, error.description or ""
                ) from error

    async def _patiently(self, step: Callable[[], Awaitable[T]], deadline: float, what: str) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await step()
            except UNANSWERED:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LogUnavailable(what, self.patience) from None
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0, remaining))

    async def link_at(self, position: int) -> str:
        """The chain link of the event at `position` (what the next event of its aggregate
        chains to); the genesis link for 0, a new aggregate."""
        if position == 0:
            return chain.GENESIS
        return chain.link_of((await self.get(position)).envelope)

    async def _our_last_message(self, subject: str, event_id: str) -> int | None:
        try:
            last = await self.js.get_last_msg(LOG_STREAM, subject)
        except NotFoundError:
            return None
        if last.headers and last.headers.get("Nats-Msg-Id") == event_id:
            return last.seq
        return None

    async def last_position_of(self, aggregate_type: str, aggregate_id: str) -> int:
        """The position of an aggregate's last event, 0 when it has none."""
        try:
            last = await self.js.get_last_msg(
                LOG_STREAM, self.subjects.events(aggregate_type, aggregate_id)
            )
        except NotFoundError:
            return 0
        return int(last.seq or 0)

    async def last_position(self) -> int:
        """Where the log ends now; retried while the server does not answer."""
        deadline = time.monotonic() + self.patience
        info = await self._patiently(lambda: self.js.stream_info(LOG_STREAM), deadline, "log")
        return int(info.state.last_seq)

    async def get(self, position: int) -> RecordedEvent:
        msg = await self.js.get_msg(LOG_STREAM, seq=position)
        assert msg.data is not None and msg.seq is not None
        return RecordedEvent(position=msg.seq, envelope=EventEnvelope.model_validate_json(msg.data))

    async def read_aggregate(
        self, aggregate_type: str, aggregate_id: str, after: int = 0
    ) -> list[RecordedEvent]:
        """The aggregate's events in order; `after`: only those after that log position."""
        subject = self.subjects.events(aggregate_type, aggregate_id)
        try:
            last = await self.js.get_last_msg(LOG_STREAM, subject)
        except NotFoundError:
            return []
        if last.seq is not None and last.seq <= after:
            return []
        return [
            e async for e in self.read(after + 1, filter_subject=subject, until_position=last.seq)
        ]

    async def read(
        self,
        from_position: int = 1,
        *,
        filter_subject: str | None = None,
        until_position: int | None = None,
        until_time: datetime | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[RecordedEvent]:
        """Events in log order from `from_position`, up to a position or a log time.

        Without a bound it stops at the end of the log as it was when reading began. It is
        complete or it raises `LogUnavailable`: never silently short (see `read_raw`).
        """
        async for msg in self._messages(from_position, filter_subject, until_position, batch):
            if until_time is not None and stored_at(msg) > until_time:
                return
            yield _recorded(msg)

    async def read_raw(
        self,
        from_position: int = 1,
        *,
        filter_subject: str | None = None,
        until_position: int | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[tuple[int, str, bytes]]:
        """(position, subject, stored bytes) in log order, unparsed: what verification and
        copies need. Complete up to the bound or raises `LogUnavailable`."""
        async for msg in self._messages(from_position, filter_subject, until_position, batch):
            yield position_of(msg), msg.subject, msg.data

    async def _messages(
        self,
        from_position: int,
        filter_subject: str | None,
        until_position: int | None,
        batch: int,
    ) -> AsyncIterator[Msg]:
        """Every stored message from `from_position` to the end, the end being taken when the
        read begins. A fetch that times out before the end is not the end: the reader is
        made again from the next position, for as long as `patience` allows without a
        message, then `LogUnavailable` is raised."""
        end = until_position if until_position is not None else await self.last_position()
        wanted = filter_subject or self.subjects.events_all
        position = from_position
        deadline = time.monotonic() + self.patience
        while position <= end:
            try:
                info = await self.js.add_consumer(LOG_STREAM, _reader_config(position, wanted))
                puller = await BatchPuller(self.js, LOG_STREAM, info.name).start()
            except (*UNANSWERED, NotFoundError) as error:
                await self._wait_or_give_up(deadline, position, end, error)
                continue
            try:
                pending = info.num_pending or 0
                while position <= end and pending > 0:
                    try:
                        msgs = await puller.fetch(batch, timeout=2.0)
                    except (*UNANSWERED, NotFoundError) as error:
                        # Not the end: `pending` says more is stored. Read on from here.
                        await self._wait_or_give_up(deadline, position, end, error)
                        break
                    deadline = time.monotonic() + self.patience
                    for msg in msgs:
                        stored = position_of(msg)
                        if stored > end:
                            return
                        position = stored + 1
                        yield msg
                    pending = msgs[-1].metadata.num_pending
                else:
                    return  # nothing more on the subjects read, or past the end
            finally:
                await _close_quietly(self.js, puller, info.name)

    async def _wait_or_give_up(
        self, deadline: float, position: int, end: int, error: BaseException
    ) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LogUnavailable(
                f"reading the log at {position} of {end}", self.patience
            ) from error
        log.warning("read.retry", position=position, end=end, error=type(error).__name__)
        await asyncio.sleep(min(0.5, remaining))


def _reader_config(start: int, subject: str) -> ConsumerConfig:
    return ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=AckPolicy.NONE,
        filter_subject=subject,
        inactive_threshold=30.0,
        mem_storage=True,
        num_replicas=1,
    )


def _recorded(msg: Msg) -> RecordedEvent:
    return RecordedEvent(
        position=position_of(msg),
        envelope=EventEnvelope.model_validate_json(msg.data),
    )


async def _close_quietly(js: JetStreamContext, sub: BatchPuller, consumer: str | None) -> None:
    """Remove a reader's consumer now rather than waiting for its inactivity threshold
    (briefly: a server that does not answer lets it expire on its own)."""
    try:
        await sub.unsubscribe()
        if consumer is not None:
            await asyncio.wait_for(js.delete_consumer(LOG_STREAM, consumer), 2.0)
    except Exception:  # noqa: BLE001 - cleanup must not mask the reader's outcome
        log.debug("read.cleanup_failed", consumer=consumer)
