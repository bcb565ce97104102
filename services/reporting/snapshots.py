"""Snapshots of the report fold, so that a report at any point folds at most
`snapshot_every` events from the log on top of the nearest earlier snapshot, instead of
the whole log (a million events is a minute of reading; a snapshot is a fraction of a
second).

A snapshot depends on the log and on the code that folds it, nothing else: each carries a
fingerprint of that code, and one taken by other code is ignored (and replaced as the
snapshotter catches up again). They live in their own table, which a projection rebuild
leaves alone.

Pickling the fold costs about a second per 20 MB of state, which at a million events was
half of a replay's CPU: where the platform can fork, a child process pickles and
compresses a copy-on-write image of the fold while the service folds on (as Redis'
BGSAVE does), and hands the bytes back through a pipe; the parent only stores them.
How a snapshot is stored (in parts that consecutive snapshots share) is
snapshot_format.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pickle
import signal
import time
import warnings
from collections import deque
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
)

from contracts.base import RecordedEvent
from services.reporting import snapshot_format, snapshot_tables
from services.reporting.report import PortfolioReport
from services.reporting.snapshot_format import UNREADABLE, SnapshotParts
from services.reporting.snapshot_tables import TableLayout
from shared.db import Database
from shared.eventlog import EventLog

log = structlog.get_logger(__name__)

_ROOT = Path(__file__).resolve().parents[2]
#: The code a fold runs: the fold and what it keeps, the pure domain whose states it keeps
#: (projects, ledger, risk, prioritization), the contracts. What is built from a fold
#: (figures, documents, improvement, diff) reads it afresh each time and is left out.
FOLD_SOURCES = (
    "contracts",
    "domain",
    "services/reporting/report.py",
    "services/reporting/facts.py",
    "services/reporting/highlights.py",
)


def fingerprint() -> str:
    digest = hashlib.sha256()
    for name in FOLD_SOURCES:
        path = _ROOT / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            if file.exists():
                digest.update(file.relative_to(_ROOT).as_posix().encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:32]


metadata = MetaData()
snapshots_table = Table(
    "reporting_snapshots",
    metadata,
    #: The last log position folded into the snapshot.
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("fingerprint", String(32), primary_key=True),
    Column("taken_at", DateTime(), nullable=False),
    Column("size", Integer, nullable=False),
    Column("state", LargeBinary, nullable=False),
)
#: The parts snapshots share (snapshot_format.py), once each, by the digest of their pickle.
parts_table = Table(
    "reporting_snapshot_parts",
    metadata,
    Column("digest", LargeBinary(snapshot_format.DIGEST_SIZE), primary_key=True),
    Column("fingerprint", String(32), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)
#: Digests asked for in one query (SQLite's older builds allow 999 parameters).
_DIGESTS_PER_QUERY = 500


@dataclass(frozen=True)
class Snapshot:
    position: int
    report: PortfolioReport


#: Whether snapshots are pickled in a forked child (POSIX), else in the service itself.
CAN_FORK = hasattr(os, "fork")


class SnapshotFailed(RuntimeError):
    """A child pickling a snapshot died or gave nothing back; the fold itself is unharmed."""


@dataclass(frozen=True)
class PendingSnapshot:
    """A snapshot begun: made here already (`parts`), or by child `pid` into `pipe`.
    `pins` keeps the levels it may store apart alive until it is stored."""

    position: int
    parts: SnapshotParts | None = None
    pid: int = 0
    pipe: int = -1
    pins: tuple[object, ...] = ()


class SnapshotStore:
    def __init__(self, db: Database, fork: bool = CAN_FORK) -> None:
        self.db = db
        self.fork = fork
        self.fingerprint = fingerprint()
        #: The last snapshot stored: its parts' digests by the id of their level, and the
        #: levels themselves, held so that no other object takes one of those ids.
        self._known: Mapping[int, bytes] = {}
        self._pins: tuple[object, ...] = ()
        #: Digests of the parts stored (by this process: a part stored before a restart is
        #: packed once more, and not stored twice).
        self._stored: set[bytes] = set()
        #: Where the last snapshot stored each chunked table's entries.
        self._layouts: Mapping[str, TableLayout] = {}

    async def create(self) -> None:
        await self.db.write(lambda conn: metadata.create_all(conn))

    async def latest(self, at_most: int | None = None) -> Snapshot | None:
        """The newest snapshot at or before position `at_most` (any, when None)."""
        return await self.db.read(self._latest, at_most)

    async def any_between(self, after: int, until: int) -> bool:
        """Whether a snapshot lies after position `after`, at or before `until` (one is
        cheaper to load than folding the events up to it)."""

        def query(conn: Connection) -> bool:
            t = snapshots_table.c
            found = conn.execute(
                select(t.position)
                .where(
                    (t.fingerprint == self.fingerprint)
                    & (t.position > after)
                    & (t.position <= until)
                )
                .limit(1)
            ).first()
            return found is not None

        return await self.db.read(query)

    def _latest(self, conn: Connection, at_most: int | None) -> Snapshot | None:
        t = snapshots_table.c
        query = (
            select(t.position, t.state)
            .where(t.fingerprint == self.fingerprint)
            .order_by(t.position.desc())
        )
        if at_most is not None:
            query = query.where(t.position <= at_most)
        # Newest first, one row at a time: a snapshot that cannot be read (a damaged file,
        # a part missing) costs a longer fold from the one before it, never the report.
        for row in conn.execute(query):
            try:
                report = snapshot_format.load(row.state, lambda ds: self._parts(conn, ds))
                return Snapshot(row.position, report)
            except UNREADABLE as error:
                log.warning(
                    "snapshot.unreadable",
                    position=row.position,
                    error=f"{type(error).__name__}: {error}",
                )
        return None

    def _parts(self, conn: Connection, digests: list[bytes]) -> dict[bytes, bytes]:
        """The packed parts stored of `digests`, by digest."""
        t = parts_table.c
        rows = self._of_digests(conn, digests, t.digest, t.data)
        return {bytes(row.digest): bytes(row.data) for row in rows}

    def _of_digests(self, conn: Connection, digests: list[bytes], *columns: Any) -> list[Any]:
        t = parts_table.c
        rows: list[Any] = []
        for start in range(0, len(digests), _DIGESTS_PER_QUERY):
            rows += conn.execute(
                select(*columns).where(
                    (t.fingerprint == self.fingerprint)
                    & t.digest.in_(digests[start : start + _DIGESTS_PER_QUERY])
                )
            ).all()
        return rows

    async def save(self, position: int, report: PortfolioReport) -> int:
        """Save the report as it is now; returns the bytes stored."""
        return await self.finish(self.begin(position, report))

    def begin(
        self, position: int, report: PortfolioReport, touched: Collection[Hashable] = ()
    ) -> PendingSnapshot:
        """Take the report as it is at this instant: forked (the child pickles the image
        the fork froze, so the caller may fold on at once), else pickled here. `touched`:
        the keys of the entries events changed since the last snapshot (snapshot_tables.py)."""
        pins = tuple(snapshot_format.pinned_levels(report))
        pinned = frozenset(map(id, pins))
        if self.fork:
            read, write = os.pipe()
            with warnings.catch_warnings():  # the child touches no lock another thread holds
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # pragma: no cover - the child, measured by the snapshot tests
                layout = (self._layouts, touched)
                _dump_and_exit(report, pinned, self._known, self._stored, layout, read, write)
            os.close(write)
            return PendingSnapshot(position, pid=pid, pipe=read, pins=pins)
        parts = snapshot_format.dump(
            report, pinned, self._known, self._stored, self._layouts, touched
        )
        return PendingSnapshot(position, parts=parts, pins=pins)

    async def finish(self, pending: PendingSnapshot) -> int:
        """Store a begun snapshot; returns the bytes stored (its own and its new parts').
        Cancelled, it ends the child."""
        parts = pending.parts if pending.parts is not None else await self._from_child(pending)
        size = await self.db.write(self._save, pending.position, parts)
        self._known, self._pins, self._layouts = parts.ids, pending.pins, parts.layouts
        self._stored.update(parts.new)
        return size

    async def _from_child(self, pending: PendingSnapshot) -> SnapshotParts:
        try:
            state = await asyncio.to_thread(_read_all, pending.pipe)
            _, status = await asyncio.to_thread(os.waitpid, pending.pid, 0)
        except BaseException:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pending.pid, signal.SIGKILL)
                os.waitpid(pending.pid, 0)  # noqa: ASYNC222 - killed: reaped at once
            raise
        code = os.waitstatus_to_exitcode(status)
        try:
            parts = pickle.loads(state) if code == 0 else None
        except UNREADABLE:
            parts = None
        if not isinstance(parts, SnapshotParts):
            raise SnapshotFailed(
                f"the child pickling the snapshot at {pending.position} ended with {code}"
            )
        return parts

    def _save(self, conn: Connection, position: int, parts: SnapshotParts) -> int:
        t, pt = snapshots_table.c, parts_table.c
        conn.execute(delete(snapshots_table).where(t.fingerprint != self.fingerprint))
        conn.execute(delete(parts_table).where(pt.fingerprint != self.fingerprint))
        conn.execute(
            delete(snapshots_table).where(
                (t.position == position) & (t.fingerprint == self.fingerprint)
            )
        )
        new = dict(parts.new)
        for present in self._of_digests(conn, list(new), pt.digest):  # only their digests
            del new[bytes(present.digest)]
        if new:
            conn.execute(
                parts_table.insert(),
                [
                    {"digest": d, "fingerprint": self.fingerprint, "size": len(b), "data": b}
                    for d, b in new.items()
                ],
            )
        conn.execute(
            snapshots_table.insert(),
            {
                "position": position,
                "fingerprint": self.fingerprint,
                "taken_at": datetime.now(UTC).replace(tzinfo=None),
                "size": len(parts.blob),
                "state": parts.blob,
            },
        )
        return len(parts.blob) + sum(map(len, new.values()))

    async def stats(self) -> tuple[int, int, int]:
        """(count, total bytes with their parts, newest position) of the current code's
        snapshots."""

        def query(conn: Connection) -> tuple[int, int, int]:
            t, pt = snapshots_table.c, parts_table.c
            row = conn.execute(
                select(func.count(), func.sum(t.size), func.max(t.position)).where(
                    t.fingerprint == self.fingerprint
                )
            ).one()
            parts = conn.execute(
                select(func.sum(pt.size)).where(pt.fingerprint == self.fingerprint)
            ).scalar()
            return int(row[0] or 0), int(row[1] or 0) + int(parts or 0), int(row[2] or 0)

        return await self.db.read(query)


def _dump_and_exit(
    report: PortfolioReport,
    pinned: frozenset[int],
    known: Mapping[int, bytes],
    stored: set[bytes],
    layout: tuple[Mapping[str, TableLayout], Collection[Hashable]],
    read: int,
    write: int,
) -> None:
    """The forked child: the snapshot's parts into the pipe, then gone without running
    anything the parent owns (no atexit, no buffers flushed twice, no connection closed)."""
    status = 1
    try:
        os.close(read)
        parts = snapshot_format.dump(report, pinned, known, stored, *layout)
        data = memoryview(pickle.dumps(parts, pickle.HIGHEST_PROTOCOL))
        while data:
            data = data[os.write(write, data) :]
        status = 0
    finally:
        os._exit(status)


def _read_all(pipe: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(pipe, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(pipe)
    return b"".join(chunks)


class Runtime(Protocol):
    """Where the snapshotter finds the log and the database once the service has started."""

    @property
    def log(self) -> EventLog: ...

    @property
    def db(self) -> Database: ...


class _Source(Protocol):
    """The projection runner, as far as the snapshotter looks at it."""

    position: int
    state: str


#: Events the projection committed that may wait for the snapshotter (beyond: the oldest
#: batches are dropped and the snapshotter reads their events from the log instead).
QUEUE_LIMIT = 5000
#: Events folded between two chances for other work on the event loop.
YIELD_EVERY = 200


class Snapshotter:
    """Folds the log in the background, saving a snapshot every `every` events (0: never,
    and reports fold the whole log).

    The service's projection hands it each batch it committed (`committed`, the events
    already read and parsed): when a batch follows on from what was folded, its events are
    folded as they are. Whatever it cannot have that way (what the projection committed
    before, a batch with an event the projection skipped, batches dropped while it was
    behind, or no projection running at all) it reads from the log, as it always did: the
    same events are folded in the same order either way, so the snapshots are the same."""

    def __init__(self, runtime: Runtime, every: int, poll: float = 1.0) -> None:
        self.runtime = runtime
        self.every = every
        self.poll = poll
        #: The last position folded (not necessarily saved).
        self.position = 0
        #: The events folded from the projection's batches, and those read from the log.
        self.handed = 0
        self.read = 0
        self.store: SnapshotStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._batches: deque[tuple[int, int, list[RecordedEvent]]] = deque()
        self._queued = 0
        self._arrived = asyncio.Event()
        self._report = PortfolioReport()
        self._saved = 0
        #: The keys of the entries the events folded since the last snapshot may change.
        self._touched: set[Hashable] = set()
        #: The snapshot being stored while the fold goes on (one at a time).
        self._storing: asyncio.Task[None] | None = None

    async def start(self, store: SnapshotStore | None = None) -> None:
        if self.every <= 0:
            return
        self.store = store or SnapshotStore(self.runtime.db)
        await self.store.create()
        self._task = asyncio.create_task(self._run(self.store), name="report-snapshots")

    async def stop(self) -> None:
        # nats-py's fetch can turn a cancellation into a timeout, which the log reader
        # takes for the end of the log: the loop also checks this flag.
        self._stopping = True
        self._batches.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 10)
        if self._storing is not None:  # the snapshot begun last is stored, if it comes soon
            try:
                await asyncio.wait_for(asyncio.shield(self._storing), 10)
            except TimeoutError:
                self._storing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._storing

    async def flush(self) -> None:
        """Wait until every snapshot due at the position folded so far is stored (or has
        failed, logged): one due may not be begun yet while the one before is stored."""
        while True:
            storing = self._storing
            if storing is not None:
                await asyncio.shield(storing)
            running = self._task is not None and not self._task.done() and not self._stopping
            if running and self.position - self._saved >= self.every:
                await asyncio.sleep(0.005)  # the fold begins it once the one before is stored
            elif self._storing is storing:
                return

    def committed(self, first: int, last: int, events: list[RecordedEvent]) -> None:
        """The projection committed positions `first`..`last`, applying `events` (those it
        skipped are absent): kept for the fold, up to `QUEUE_LIMIT` events."""
        if self._task is None or self._stopping or last <= self.position:
            return
        self._batches.append((first, last, events))
        self._queued += len(events)
        while self._queued > QUEUE_LIMIT and len(self._batches) > 1:
            self._queued -= len(self._batches.popleft()[2])
        self._arrived.set()

    async def describe(self) -> dict[str, int]:
        """What `portfolio.query.reporting.snapshots` answers."""
        count, size, newest = await self.store.stats() if self.store else (0, 0, 0)
        return {
            "every": self.every,
            "folded_position": self.position,
            "snapshots": count,
            "bytes": size,
            "newest_position": newest,
        }

    async def _run(self, store: SnapshotStore) -> None:
        latest = await store.latest()
        self._report = latest.report if latest is not None else PortfolioReport()
        self.position = latest.position if latest is not None else 0
        self._saved = self.position
        while not self._stopping:
            try:
                await self._catch_up(store)
                if self._stopping:
                    return
                if not self._batches:
                    self._arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._arrived.wait(), self.poll)
            except asyncio.CancelledError:
                raise
            except Exception:  # tried again after a pause; reports still work without (logged)
                log.exception("report.snapshot_failed", position=self.position)
                await asyncio.sleep(max(self.poll, 2.0))

    async def _catch_up(self, store: SnapshotStore) -> None:
        """Fold the batches handed over, reading from the log what they leave out; then
        what was committed without being handed over (or, with no projection running,
        the log up to its end)."""
        batches = self._batches
        while batches and not self._stopping:
            first, last, events = batches[0]
            if last <= self.position:
                self._queued -= len(batches.popleft()[2])
                continue
            if first > self.position + 1:  # what comes before the batch: from the log
                await self._read(store, first - 1)
                continue
            self._queued -= len(batches.popleft()[2])
            start = self.position + 1
            fresh = events if first == start else [e for e in events if e.position >= start]
            if (
                fresh
                and fresh[0].position == start
                and fresh[-1].position == last
                and len(fresh) == last - start + 1
            ):
                await self._fold(store, fresh)
            else:  # the projection skipped some: the log says what they were
                await self._read(store, last)
        if self._stopping:
            return
        target = self._committed_position()
        if target is None:
            target = await self.runtime.log.last_position()
        if target > self.position:
            await self._read(store, target)

    def _committed_position(self) -> int | None:
        """Where the service's projection stands, when it runs and hands its batches over
        (what lies beyond comes with its next batches); None without one, or while it is
        stalled: then the log is read up to its end."""
        try:
            runner: _Source | None = self.runtime.runner  # type: ignore[attr-defined]
        except (AttributeError, AssertionError):
            return None
        if runner is None or runner.state in ("stalled", "stopped"):
            return None
        return int(runner.position)

    async def _fold(self, store: SnapshotStore, events: list[RecordedEvent]) -> None:
        report, touched = self._report, self._touched
        every = self.every
        for count, event in enumerate(events, start=1):
            if self._stopping:
                return
            report.apply(event)
            snapshot_tables.note(touched, event.envelope)
            self.position = event.position
            self.handed += 1
            if self.position - self._saved >= every:
                await self._save(store)
            elif count % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def _read(self, store: SnapshotStore, until: int) -> None:
        report = self._report
        async for event in self.runtime.log.read(self.position + 1, until_position=until):
            if self._stopping:
                return
            report.apply(event)
            snapshot_tables.note(self._touched, event.envelope)
            self.position = event.position
            self.read += 1
            if self.position - self._saved >= self.every:
                await self._save(store)

    async def _save(self, store: SnapshotStore) -> None:
        """Begin a snapshot of the fold as it is now, stored while the fold goes on."""
        if self._storing is not None:  # one child at a time
            await asyncio.shield(self._storing)
        started = time.perf_counter()
        pending = store.begin(self.position, self._report, self._touched)
        self._saved = self.position
        self._touched.clear()  # taken: the child has its copy, or it is pickled already
        self._storing = asyncio.create_task(self._store(store, pending, started))

    async def _store(self, store: SnapshotStore, pending: PendingSnapshot, started: float) -> None:
        try:
            size = await store.finish(pending)
        except Exception:  # the next one is taken `every` events on; reports work without
            log.exception("report.snapshot_failed", position=pending.position)
            return
        log.info(
            "report.snapshot_saved",
            position=pending.position,
            bytes=size,
            seconds=round(time.perf_counter() - started, 3),
        )
