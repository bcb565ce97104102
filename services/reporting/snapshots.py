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
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import lzma
import os
import pickle
import signal
import time
import warnings
import zlib
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog
import zstandard
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
from services.reporting.report import PortfolioReport
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


#: How a snapshot's pickle is stored: Zstandard at level 9. Against xz at its fastest preset
#: (what snapshots were before) it is 3% bigger, packs in 0.30 s instead of 0.52 and unpacks
#: in 0.03 s instead of 0.20 (the 19 MB pickle of a million-event fold): a report as of a
#: past time unpacks one, and the forked child that packs one shares two cores with the
#: replay. Snapshots stored as xz or zlib before are still read.
ZSTD_LEVEL = 9
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZLIB_FIRST = 0x78  # a zlib stream's first byte (deflate, 32 KiB window)


def pack(pickled: bytes) -> bytes:
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    return compressor.compress(pickled)


def unpack(state: bytes) -> bytes:
    """The pickle a stored snapshot holds, whichever of the three forms it was stored in."""
    if state.startswith(_ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().decompress(state)
    if state.startswith(_XZ_MAGIC):
        return lzma.decompress(state)
    if state[:1] == bytes((_ZLIB_FIRST,)):
        return zlib.decompress(state)
    raise ValueError(f"a snapshot in no known format (first bytes {state[:6].hex()})")


#: What reading a damaged snapshot raises (a truncated or altered blob, a bad pickle).
_UNREADABLE = (
    ValueError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
    pickle.UnpicklingError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
)


def _load(state: bytes) -> PortfolioReport:
    pickled = unpack(state)
    # Millions of objects, none of them garbage: collecting while they are made only
    # walks them again and again (a quarter of the load's time).
    paused = gc.isenabled()
    gc.disable()
    try:
        report: PortfolioReport = pickle.loads(pickled)
    finally:
        if paused:
            gc.enable()
    if not isinstance(report, PortfolioReport):
        raise TypeError(f"a snapshot of a {type(report).__name__}, not a report")
    return report


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
    """A snapshot begun: pickled here already (`pickled`), or by child `pid` into `pipe`."""

    position: int
    pickled: bytes | None = None
    pid: int = 0
    pipe: int = -1


class SnapshotStore:
    def __init__(self, db: Database, fork: bool = CAN_FORK) -> None:
        self.db = db
        self.fork = fork
        self.fingerprint = fingerprint()

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
        # Newest first, one row at a time: a snapshot that cannot be read (a damaged file)
        # costs a longer fold from the one before it, never the report.
        for row in conn.execute(query):
            try:
                return Snapshot(row.position, _load(row.state))
            except _UNREADABLE as error:
                log.warning(
                    "snapshot.unreadable",
                    position=row.position,
                    error=f"{type(error).__name__}: {error}",
                )
        return None

    async def save(self, position: int, report: PortfolioReport) -> int:
        """Save the report as it is now; returns the bytes stored."""
        return await self.finish(self.begin(position, report))

    def begin(self, position: int, report: PortfolioReport) -> PendingSnapshot:
        """Take the report as it is at this instant: forked (the child pickles the image
        the fork froze, so the caller may fold on at once), else pickled here."""
        if self.fork:
            read, write = os.pipe()
            with warnings.catch_warnings():  # the child touches no lock another thread holds
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # pragma: no cover - the child, measured by the snapshot tests
                _pack_and_exit(report, read, write)
            os.close(write)
            return PendingSnapshot(position, pid=pid, pipe=read)
        return PendingSnapshot(position, pickled=pickle.dumps(report, pickle.HIGHEST_PROTOCOL))

    async def finish(self, pending: PendingSnapshot) -> int:
        """Store a begun snapshot (compressed off the event loop: on the database's thread,
        or in the child); returns the bytes stored. Cancelled, it ends the child."""
        if pending.pickled is not None:
            return await self.db.write(self._save, pending.position, pending.pickled, True)
        try:
            state = await asyncio.to_thread(_read_all, pending.pipe)
            _, status = await asyncio.to_thread(os.waitpid, pending.pid, 0)
        except BaseException:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pending.pid, signal.SIGKILL)
                os.waitpid(pending.pid, 0)  # noqa: ASYNC222 - killed: reaped at once
            raise
        code = os.waitstatus_to_exitcode(status)
        if code != 0 or not state.startswith(_ZSTD_MAGIC):
            raise SnapshotFailed(
                f"the child pickling the snapshot at {pending.position} ended with {code}"
            )
        return await self.db.write(self._save, pending.position, state, False)

    def _save(self, conn: Connection, position: int, data: bytes, pickled: bool) -> int:
        state = pack(data) if pickled else data
        t = snapshots_table.c
        conn.execute(delete(snapshots_table).where(t.fingerprint != self.fingerprint))
        conn.execute(
            delete(snapshots_table).where(
                (t.position == position) & (t.fingerprint == self.fingerprint)
            )
        )
        conn.execute(
            snapshots_table.insert(),
            {
                "position": position,
                "fingerprint": self.fingerprint,
                "taken_at": datetime.now(UTC).replace(tzinfo=None),
                "size": len(state),
                "state": state,
            },
        )
        return len(state)

    async def stats(self) -> tuple[int, int, int]:
        """(count, total bytes, newest position) of the current code's snapshots."""

        def query(conn: Connection) -> tuple[int, int, int]:
            t = snapshots_table.c
            row = conn.execute(
                select(func.count(), func.sum(t.size), func.max(t.position)).where(
                    t.fingerprint == self.fingerprint
                )
            ).one()
            return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)

        return await self.db.read(query)


def _pack_and_exit(report: PortfolioReport, read: int, write: int) -> None:
    """The forked child: the snapshot's bytes into the pipe, then gone without running
    anything the parent owns (no atexit, no buffers flushed twice, no connection closed)."""
    status = 1
    try:
        os.close(read)
        data = memoryview(pack(pickle.dumps(report, pickle.HIGHEST_PROTOCOL)))
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
        report = self._report
        every = self.every
        for count, event in enumerate(events, start=1):
            if self._stopping:
                return
            report.apply(event)
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
            self.position = event.position
            self.read += 1
            if self.position - self._saved >= self.every:
                await self._save(store)

    async def _save(self, store: SnapshotStore) -> None:
        """Begin a snapshot of the fold as it is now, stored while the fold goes on."""
        if self._storing is not None:  # one child at a time
            await asyncio.shield(self._storing)
        started = time.perf_counter()
        pending = store.begin(self.position, self._report)
        self._saved = self.position
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
