"""The projection runner: log -> database, exactly once in effect.

Each batch of events and the new stream position are committed in one transaction, so a
crash anywhere leaves either both or neither. Redelivered events at or below the stored
position are acknowledged and skipped. An event the projection cannot use (malformed,
unknown type, unknown aggregate) is recorded with its reason and passed over; any other
failure rolls the batch back and reads it again from the stored position after a delay, so
nothing is silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Literal

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError
from sqlalchemy import Connection, MetaData, Table, delete, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError

from contracts.base import EventEnvelope, RecordedEvent
from contracts.registry import UnknownEventType
from contracts.subjects import LOG_STREAM, Subjects
from shared import metrics, tracing
from shared.db import Database, insert_many, positions, runner_metadata, skipped_events
from shared.pull import BatchPuller, position_of

log = structlog.get_logger(__name__)

RunnerState = Literal["starting", "running", "replaying", "stalled", "stopped"]


class CannotApply(Exception):
    """Raised by a projection, before it writes anything, for an event it can never use
    (e.g. one for an aggregate it has never seen)."""


class Projection(ABC):
    """A service's read model: its tables and how one event changes them."""

    name: str
    metadata: MetaData

    def load(self, conn: Connection) -> None:
        """Rebuild any in-memory state from the tables (at start, after a rebuild, and after
        a failed batch, so memory never runs ahead of what was committed)."""
        return None

    @property
    def _pending(self) -> dict[Table, list[dict[str, object]]]:
        pending: dict[Table, list[dict[str, object]]] = self.__dict__.setdefault("_rows", {})
        return pending

    def insert_later(self, table: Table, row: dict[str, object]) -> None:
        """Insert `row` when the batch is flushed: one statement per table and batch instead
        of one per event. Only for tables nothing reads while a batch is applied."""
        self._pending.setdefault(table, []).append(row)

    def flush(self, conn: Connection) -> None:
        """Write the rows `insert_later` kept; called at the end of every batch."""
        for table, rows in self._pending.items():
            if rows:
                insert_many(conn, table, rows)
        self._pending.clear()

    def discard(self) -> None:
        """Forget rows kept for a batch that failed (its transaction rolled back)."""
        self._pending.clear()

    @abstractmethod
    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        """Synchronous on purpose: a whole batch runs in one hop to the database's thread,
        instead of one hop per statement."""

    def committed(self, first: int, last: int, events: list[RecordedEvent]) -> None:
        """Called on the event loop once positions `first`..`last` are committed, with the
        events of that range the projection applied (skipped ones are absent): lets other
        work of the service fold what was already read and parsed instead of reading the
        log again."""
        return None


class ProjectionRunner:
    def __init__(
        self,
        js: JetStreamContext,
        db: Database,
        projection: Projection,
        subjects: Subjects,
        batch_size: int = 500,
        retry_delay: float = 2.0,
        after_batch: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.js = js
        self.db = db
        self.projection = projection
        self.subjects = subjects
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        #: Runs after every committed batch: where a service decides on what just changed.
        self.after_batch = after_batch
        self.position = 0
        self.applied = 0
        self.poll_seconds = 0.5
        self.state: RunnerState = "starting"
        self.last_error: str | None = None
        self.caught_up = asyncio.Event()
        self._sub: BatchPuller | None = None
        self._task: asyncio.Task[None] | None = None
        self._rebuild_requested = False
        self._batch_failing = False
        self.rebuilds = 0
        # Metrics of this projection, bound once (a label lookup per batch would cost more).
        label = projection.name
        self._m_position = metrics.POSITION.labels(label)
        self._m_lag = metrics.LAG.labels(label)
        self._m_batch_events = metrics.BATCH_EVENTS.labels(label)
        self._m_batch_seconds = metrics.BATCH_SECONDS.labels(label)
        self._m_applied = metrics.APPLIED.labels(label)
        self._m_skipped = metrics.SKIPPED.labels(label)
        self._m_failed = metrics.FAILED_BATCHES.labels(label)
        self._m_rebuilds = metrics.REBUILDS.labels(label)

    @property
    def consumer_name(self) -> str:
        return f"projection-{self.projection.name}"

    async def start(self) -> None:
        for attempt in range(5):
            try:
                self.position = await self.db.write(self._prepare)
                break
            except DBAPIError:
                # Services sharing one PostgreSQL database may create tables at the same
                # moment; the loser of that race simply tries again.
                if attempt == 4:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        await self._subscribe()
        info = await self.js.stream_info(LOG_STREAM)
        self._m_position.set(self.position)
        self._m_lag.set(max(0, info.state.last_seq - self.position))
        if self.position >= info.state.last_seq:
            self._mark_caught_up()
        self._task = asyncio.create_task(self._run(), name=f"projection:{self.projection.name}")

    async def stop(self) -> None:
        # nats-py's fetch can turn a cancellation into a timeout, so the loop also checks
        # the state rather than relying on cancellation alone.
        self.state = "stopped"
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 5)
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may already be gone
                log.debug("projection.unsubscribe_failed")

    def request_rebuild(self) -> None:
        """Ask the loop to drop the projection and replay the whole log before its next fetch."""
        self._rebuild_requested = True
        self.state = "replaying"
        self.caught_up.clear()

    def _prepare(self, conn: Connection) -> int:
        """Create the tables, load the projection's memory, and say where it stands.

        Tables whose columns differ from the code's (a new version added one), or a table
        missing beside existing ones, are dropped with the stored position, so the
        projection is rebuilt from the log."""
        runner_metadata.create_all(conn)
        changed = self._changed_tables(conn)
        if changed:
            log.warning(
                "projection.schema_changed_rebuilding",
                projection=self.projection.name,
                tables=changed,
            )
            self._reset(conn)
            self._m_rebuilds.inc()
        self.projection.metadata.create_all(conn)
        self.projection.load(conn)
        stored = conn.execute(
            select(positions.c.position).where(positions.c.projection == self.projection.name)
        ).scalar()
        return int(stored or 0)

    def _changed_tables(self, conn: Connection) -> list[str]:
        """Tables an older version made differently: other columns, or missing beside
        tables that exist (a version that added a table has state the log must fill)."""
        found = inspect(conn)
        tables = self.projection.metadata.sorted_tables
        present = [t for t in tables if found.has_table(t.name)]
        missing = [t.name for t in tables if present and not found.has_table(t.name)]
        return missing + [
            table.name
            for table in present
            if {c["name"] for c in found.get_columns(table.name)} != set(table.columns.keys())
        ]

    def _reset(self, conn: Connection) -> None:
        self.projection.metadata.drop_all(conn)
        self.projection.metadata.create_all(conn)
        conn.execute(delete(positions).where(positions.c.projection == self.projection.name))
        conn.execute(
            delete(skipped_events).where(skipped_events.c.projection == self.projection.name)
        )
        self.projection.load(conn)

    async def _rebuild(self) -> None:
        self._rebuild_requested = False
        await self.db.write(self._reset)
        self.position = 0
        self.applied = 0
        self.rebuilds += 1
        self._m_rebuilds.inc()
        self._m_position.set(0)
        await self._subscribe()
        log.info("projection.rebuild_started", projection=self.projection.name)

    async def _subscribe(self) -> None:
        """(Re)create the durable consumer so it starts right after the stored position.

        The database, not the consumer, is the truth about what was applied.
        """
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may already be gone
                log.debug("projection.unsubscribe_failed")
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(LOG_STREAM, self.consumer_name)
        config = ConsumerConfig(
            durable_name=self.consumer_name,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.position + 1,
            # The database holds the position: one ack per batch (its last message) is
            # enough to keep the consumer moving; the next batch streams in meanwhile.
            ack_policy=AckPolicy.ALL,
            ack_wait=60,
            max_ack_pending=2 * self.batch_size,
            filter_subject=self.subjects.events_all,
        )
        await self.js.add_consumer(LOG_STREAM, config)
        self._sub = await BatchPuller(self.js, LOG_STREAM, self.consumer_name).start()

    async def _run(self) -> None:
        while self.state != "stopped":
            try:
                if self._rebuild_requested:
                    await self._rebuild()
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the loop must outlive any failure (logged)
                self.state = "stalled"
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("projection.loop_error", projection=self.projection.name)
                await asyncio.sleep(self.retry_delay)

    async def _step(self) -> None:
        assert self._sub is not None
        try:
            msgs = await self._sub.fetch(self.batch_size, timeout=self.poll_seconds)
        except TimeoutError:  # nats-py raises both its own and asyncio's
            # Nothing more to read: caught up, unless a batch is still failing.
            if self.state != "stopped" and not self._batch_failing:
                self._mark_caught_up()
            return
        except (nats.errors.ConnectionClosedError, nats.errors.NoRespondersError) as error:
            self.last_error = repr(error)
            await asyncio.sleep(self.retry_delay)
            return
        fresh = [m for m in msgs if position_of(m) > self.position]
        if not fresh:
            if msgs:
                await msgs[-1].ack()
            return
        if fresh[0].metadata.sequence.stream != self.position + 1:
            log.warning(
                "projection.gap",
                expected=self.position + 1,
                got=fresh[0].metadata.sequence.stream,
            )
            await self._subscribe()
            return
        started = time.perf_counter()
        traced_from = time.time_ns() if tracing.enabled() else 0
        try:
            skipped = await self._apply_batch(fresh)
        except Exception as error:  # noqa: BLE001 - a failed batch is retried, never dropped
            if traced_from:
                self._trace_batch(fresh, traced_from, error)
            self._m_failed.inc()
            self._batch_failing = True
            self.state = "stalled"
            self.last_error = f"{type(error).__name__}: {error}"
            log.error(
                "projection.batch_failed",
                projection=self.projection.name,
                first=fresh[0].metadata.sequence.stream,
                error=self.last_error,
            )
            self.projection.discard()
            await self.db.read(self.projection.load)
            await asyncio.sleep(self.retry_delay)
            # Start again right after what the database holds.
            await self._subscribe()
            return
        self._batch_failing = False
        await fresh[-1].ack()
        if self.after_batch is not None:
            try:
                await self.after_batch()
            except Exception:  # the next batch tries again; the projection goes on (logged)
                log.exception("projection.after_batch_failed", projection=self.projection.name)
        if self.state == "stalled":
            self.state = "running"
        self.last_error = None
        seconds = time.perf_counter() - started
        pending = fresh[-1].metadata.num_pending
        self._m_batch_events.observe(len(fresh))
        self._m_batch_seconds.observe(seconds)
        self._m_applied.inc(len(fresh) - skipped)
        if skipped:
            self._m_skipped.inc(skipped)
        self._m_position.set(self.position)
        self._m_lag.set(pending)
        if traced_from:
            self._trace_batch(fresh, traced_from, None)
        log.debug(
            "projection.batch_applied",
            projection=self.projection.name,
            events=len(fresh),
            position=self.position,
            seconds=round(seconds, 4),
        )
        if pending == 0:
            self._mark_caught_up()
        return

    def _trace_batch(self, msgs: list[Msg], started_ns: int, error: BaseException | None) -> None:
        """The batch's span in the traces of the commands whose events it applied."""
        try:
            tracing.batch(
                f"projection {self.projection.name}",
                msgs,
                started_ns,
                time.time_ns(),
                {
                    "portfolio.service": self.projection.name,
                    "portfolio.batch.events": len(msgs),
                    "portfolio.batch.first_position": msgs[0].metadata.sequence.stream,
                    "portfolio.batch.last_position": msgs[-1].metadata.sequence.stream,
                },
                error,
            )
        except Exception:  # tracing must never cost a batch (logged)
            log.exception("projection.trace_failed", projection=self.projection.name)

    def _mark_caught_up(self) -> None:
        if self._rebuild_requested or self.state == "stopped":
            return
        self.state = "running"
        self.caught_up.set()

    async def _apply_batch(self, msgs: list[Msg]) -> int:
        """Apply and commit a batch; returns how many of its events were skipped."""
        first = msgs[0].metadata.sequence.stream
        last = msgs[-1].metadata.sequence.stream
        applied: list[RecordedEvent] = []
        await self.db.write(self._apply_all, msgs, last, applied)
        self.position = last
        self.applied += len(msgs)
        try:
            self.projection.committed(first, last, applied)
        except Exception:  # what follows a commit never undoes it (logged)
            log.exception("projection.committed_hook_failed", projection=self.projection.name)
        return len(msgs) - len(applied)

    def _apply_all(
        self, conn: Connection, msgs: list[Msg], last: int, applied: list[RecordedEvent]
    ) -> None:
        applied.clear()  # a retried transaction starts again
        for msg in msgs:
            recorded = self._apply_one(conn, msg)
            if recorded is not None:
                applied.append(recorded)
        self.projection.flush(conn)
        changed = conn.execute(
            update(positions)
            .where(positions.c.projection == self.projection.name)
            .values(position=last)
        )
        if changed.rowcount == 0:
            conn.execute(insert(positions).values(projection=self.projection.name, position=last))

    def _apply_one(self, conn: Connection, msg: Msg) -> RecordedEvent | None:
        """Apply one event; None when it was skipped (recorded with its reason)."""
        position = position_of(msg)
        event_type = (msg.headers or {}).get("Portfolio-Event-Type")
        try:
            envelope = EventEnvelope.model_validate_json(msg.data)
            event_type = envelope.event_type
            recorded = RecordedEvent(position=position, envelope=envelope)
            self.projection.apply(conn, recorded)
            return recorded
        except (ValidationError, UnknownEventType, CannotApply) as error:
            reason = f"{type(error).__name__}: {error}"
            log.warning(
                "projection.event_skipped",
                projection=self.projection.name,
                position=position,
                event_type=event_type,
                reason=reason,
            )
            conn.execute(
                insert(skipped_events).values(
                    projection=self.projection.name,
                    position=position,
                    event_type=(event_type or "")[:128],
                    reason=reason[:4000],
                )
            )
            return None
