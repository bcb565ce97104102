"""The snapshotter folds the batches the projection hands over when they follow on from
what it folded, and reads from the log whatever they leave out (what was committed before,
an event the projection skipped, batches dropped while it was behind): either way it saves
the same snapshots, at the same positions, as folding the whole log in order."""

from __future__ import annotations

import asyncio
import lzma
import pickle
import zlib
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from bench.biglog import BigLog
from contracts.base import RecordedEvent
from services.reporting import snapshot_format
from services.reporting import snapshots as snapshots_module
from services.reporting.report import PortfolioReport
from services.reporting.snapshot_format import SnapshotParts
from services.reporting.snapshots import PendingSnapshot, Snapshot, Snapshotter

EVENTS = 2400
EVERY = 300


@pytest.fixture(scope="module")
def events() -> list[RecordedEvent]:
    envelopes = BigLog(EVENTS, seed=3, recorded_at=datetime(2026, 1, 5, tzinfo=UTC)).events()
    return [RecordedEvent(position=n, envelope=e) for n, e in enumerate(envelopes, start=1)]


def expected(events: list[RecordedEvent], start: int = 0) -> dict[int, bytes]:
    """Every snapshot a fold of the whole log saves after `start`, by position."""
    report, found = PortfolioReport(), {}
    for event in events:
        report.apply(event)
        if event.position > start and event.position % EVERY == 0:
            found[event.position] = pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
    return found


def touched_since(
    events: list[RecordedEvent], start: int = 0, every: int = EVERY
) -> dict[int, set[str]]:
    """The entries each snapshot after `start` should move last: the aggregates and the
    projects named by the events since the one before."""
    found: dict[int, set[str]] = {}
    keys: set[str] = set()
    for event in events[start:]:
        keys.add(event.envelope.aggregate_id)
        if "project_id" in event.envelope.payload:
            keys.add(event.envelope.payload["project_id"])
        if event.position % every == 0:
            found[event.position], keys = keys, set()
    return found


@dataclass
class Log:
    events: list[RecordedEvent]
    end: int = 0
    reads: list[tuple[int, int]] = field(default_factory=list)

    async def last_position(self) -> int:
        return self.end

    async def read(self, start: int, *, until_position: int) -> AsyncIterator[RecordedEvent]:
        self.reads.append((start, until_position))
        for event in self.events[start - 1 : until_position]:
            await asyncio.sleep(0)
            yield event


@dataclass
class Runner:
    position: int = 0
    state: str = "running"


@dataclass
class Runtime:
    log: Log
    runner: Runner
    db: object = None


class Store:
    def __init__(self, first: Snapshot | None = None) -> None:
        self.first = first
        self.saved: dict[int, bytes] = {}
        self.touched: dict[int, set[str]] = {}

    async def create(self) -> None:
        return None

    async def latest(self, at_most: int | None = None) -> Snapshot | None:
        return self.first

    def begin(
        self, position: int, report: PortfolioReport, touched: Collection[str] = ()
    ) -> PendingSnapshot:
        """The report as it is now: the fold goes on before `finish` (as a fork's)."""
        self.touched[position] = set(touched)
        pickled = pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
        return PendingSnapshot(position, parts=SnapshotParts(pickled))

    async def finish(self, pending: PendingSnapshot) -> int:
        assert pending.parts is not None
        await asyncio.sleep(0)  # stored while the fold goes on
        self.saved[pending.position] = pending.parts.blob
        return len(pending.parts.blob)


async def replay(
    events: list[RecordedEvent],
    snapshotter: Snapshotter,
    runtime: Runtime,
    skipped: frozenset[int] = frozenset(),
    committed_before: int = 0,
    paced: bool = False,
) -> None:
    """The projection committing the log in batches of 100, as the runner does."""
    runtime.runner.position = committed_before
    runtime.log.end = len(events)
    for first in range(committed_before + 1, len(events) + 1, 100):
        last = min(first + 99, len(events))
        runtime.runner.position = last
        batch = [e for e in events[first - 1 : last] if e.position not in skipped]
        snapshotter.committed(first, last, batch)
        await asyncio.sleep(0)
        for _ in range(2000 if paced else 0):  # a projection slower than the snapshotter
            if snapshotter.position >= last:
                break
            await asyncio.sleep(0.001)
    for _ in range(2000):
        if snapshotter.position >= len(events):
            break
        await asyncio.sleep(0.001)
    await snapshotter.stop()


async def test_batches_handed_over_make_the_same_snapshots(events: list[RecordedEvent]) -> None:
    runtime = Runtime(Log(events), Runner())
    snapshotter, store = Snapshotter(runtime, every=EVERY, poll=0.01), Store()  # type: ignore[arg-type]
    await snapshotter.start(store)  # type: ignore[arg-type]
    await replay(events, snapshotter, runtime)
    assert snapshotter.position == EVENTS
    assert store.saved == expected(events)
    assert store.touched == touched_since(events)
    assert runtime.log.reads == [] and snapshotter.handed == EVENTS


async def test_a_snapshot_inside_a_batch_hands_over_the_keys_touched_on_both_sides(
    events: list[RecordedEvent],
) -> None:
    """Snapshots every 250 events fall inside the projection's batches of 100: the keys
    the rest of a batch touches belong to the next snapshot, not lost."""
    runtime = Runtime(Log(events), Runner())
    snapshotter, store = Snapshotter(runtime, every=250, poll=0.01), Store()  # type: ignore[arg-type]
    await snapshotter.start(store)  # type: ignore[arg-type]
    await replay(events, snapshotter, runtime)
    assert store.touched == touched_since(events, every=250)


async def test_what_the_batches_leave_out_is_read_from_the_log(
    events: list[RecordedEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots_module, "QUEUE_LIMIT", 250)
    runtime = Runtime(Log(events), Runner())
    snapshotter, store = Snapshotter(runtime, every=EVERY, poll=0.01), Store()  # type: ignore[arg-type]
    await snapshotter.start(store)  # type: ignore[arg-type]
    # 500 committed before it listened, two events the projection skipped.
    await replay(events, snapshotter, runtime, skipped=frozenset({777, 1500}), committed_before=500)
    assert snapshotter.position == EVENTS
    assert store.saved == expected(events)
    assert store.touched == touched_since(events)
    assert runtime.log.reads[0] == (1, 500)
    assert any(a <= 777 <= b for a, b in runtime.log.reads)
    assert any(a <= 1500 <= b for a, b in runtime.log.reads)
    assert snapshotter.read + snapshotter.handed == EVENTS


async def test_an_event_the_projection_skipped_is_read_from_the_log(
    events: list[RecordedEvent],
) -> None:
    runtime = Runtime(Log(events), Runner())
    snapshotter, store = Snapshotter(runtime, every=EVERY, poll=0.01), Store()  # type: ignore[arg-type]
    await snapshotter.start(store)  # type: ignore[arg-type]
    await replay(events, snapshotter, runtime, skipped=frozenset({777, 1500}), paced=True)
    assert store.saved == expected(events)
    assert runtime.log.reads == [(701, 800), (1401, 1500)]
    assert snapshotter.read == 200 and snapshotter.handed == EVENTS - 200


async def test_from_a_snapshot_ahead_of_the_projection(events: list[RecordedEvent]) -> None:
    start = EVERY * 4
    report = PortfolioReport().apply_all(events[:start])
    runtime = Runtime(Log(events), Runner())
    store = Store(Snapshot(start, report))
    snapshotter = Snapshotter(runtime, every=EVERY, poll=0.01)  # type: ignore[arg-type]
    await snapshotter.start(store)  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # the projection starts from zero (a rebuild): it waits for it
    await replay(events, snapshotter, runtime)
    assert store.saved == expected(events, start)
    assert runtime.log.reads == [] and snapshotter.handed == EVENTS - start


async def test_without_a_projection_it_reads_the_log(events: list[RecordedEvent]) -> None:
    runtime = Runtime(Log(events), Runner(state="stalled"))
    runtime.log.end = len(events)
    snapshotter, store = Snapshotter(runtime, every=EVERY, poll=0.01), Store()  # type: ignore[arg-type]
    await snapshotter.start(store)  # type: ignore[arg-type]
    for _ in range(2000):
        if snapshotter.position >= len(events):
            break
        await asyncio.sleep(0.001)
    await snapshotter.stop()
    assert store.saved == expected(events)
    assert runtime.log.reads == [(1, EVENTS)]


def test_snapshots_are_packed_smaller_and_older_ones_still_read(
    events: list[RecordedEvent],
) -> None:
    pickled = pickle.dumps(PortfolioReport().apply_all(events), protocol=pickle.HIGHEST_PROTOCOL)
    packed = snapshot_format.pack(pickled)
    zlib_form = zlib.compress(pickled, 1)  # two versions ago
    xz_form = lzma.compress(pickled, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, preset=0)
    assert len(packed) < len(zlib_form) * 0.8
    assert packed.startswith(b"\x28\xb5\x2f\xfd")  # Zstandard
    for stored in (packed, zlib_form, xz_form):
        assert snapshot_format.unpack(stored) == pickled


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b"\x00" * 32,
        b"PK\x03\x04 a zip",
        b"\x28\xb5\x2f\xfd" + b"\x00" * 8,
        snapshot_format.PARTS_MAGIC + b"\x00\x00\x00\x09" + b"\x01" * 20,
        snapshot_format.PARTS_MAGIC + b"\x00\x00",
        snapshot_format.PARTS_MAGIC + b"\x00\x00\x00\x01" + b"\x02" * 16 + b"\x28\xb5",
    ],
    ids=[
        "empty",
        "zeros",
        "other-format",
        "cut-short-zstd",
        "parts-list-cut-short",
        "parts-count-cut-short",
        "parts-body-cut-short",
    ],
)
def test_bytes_that_are_no_snapshot_are_refused_with_an_error(stored: bytes) -> None:
    with pytest.raises(snapshot_format.UNREADABLE):
        snapshot_format.load(stored, lambda digests: {})
