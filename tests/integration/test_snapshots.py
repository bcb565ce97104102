"""Reports from snapshots equal reports folded from the whole log, at every cut: the
snapshot only saves reading, it never changes a figure."""

from __future__ import annotations

import asyncio
import json
import lzma
import os
import pickle
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.biglog import BigLog, publish
from contracts.subjects import LOG_STREAM
from services.reporting import documents, snapshot_format, snapshot_tables, timetravel
from services.reporting import snapshots as snapshots_module
from services.reporting.facts import Cut
from services.reporting.handlers import PublishRequest, publish_report
from services.reporting.report import PortfolioReport
from services.reporting.snapshots import SnapshotStore, Snapshotter
from services.reporting.timetravel import fold, portfolio_report, position_at
from shared.db import Database
from shared.eventlog import EventLog
from tests.previous_snapshots import store_chunks_as_the_first_version

EVENTS = 3000
EVERY = 400


def database_url(tmp_path: Path) -> str:
    return os.environ.get("PORTFOLIO_DATABASE_URL") or f"sqlite:///{tmp_path}/reporting.sqlite"


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in json.loads(json.dumps(report)).items() if k != "generated_at"}


async def same_as_a_full_fold(event_log: EventLog, store: SnapshotStore) -> None:
    """The report now, from the store's snapshots, equals the one folded from the start."""
    now = datetime.now(UTC)
    fast = await fold(event_log, Cut(), snapshots=store)
    slow = await fold(event_log, Cut())
    assert comparable(documents.portfolio(fast, now)) == comparable(documents.portfolio(slow, now))


async def same_as_full_folds_at(
    event_log: EventLog, store: SnapshotStore, positions: tuple[int, ...]
) -> None:
    """Reports cut at the stored times of `positions`, from the store's snapshots, equal
    the ones folded from the start."""
    now = datetime.now(UTC)
    for position in positions:
        cut = Cut(as_of=await _stored_time(event_log, position))
        fast = await fold(event_log, cut, snapshots=store)
        slow = await fold(event_log, cut)
        assert comparable(documents.portfolio(fast, now)) == comparable(
            documents.portfolio(slow, now)
        )


async def snapshotted(
    event_log: EventLog,
    db: Database,
    fork: bool = snapshots_module.CAN_FORK,
    store: SnapshotStore | None = None,
) -> tuple[Snapshotter, SnapshotStore]:
    snapshotter = Snapshotter(SimpleNamespace(log=event_log, db=db), every=EVERY, poll=0.05)
    await snapshotter.start(store or SnapshotStore(db, fork=fork))
    assert snapshotter.store is not None
    last = await event_log.last_position()
    for _ in range(600):
        if snapshotter.position >= last:
            break
        await asyncio.sleep(0.05)
    assert snapshotter.position == last
    await snapshotter.flush()
    return snapshotter, snapshotter.store


async def stored_with_snapshots(
    nc: Client, event_log: EventLog, tmp_path: Path, events: int, seed: int
) -> tuple[Database, SnapshotStore]:
    """A generated log of `events` and its snapshots, every `EVERY`, all stored."""
    await publish(nc.jetstream(), BigLog(events, seed=seed).events())
    db = Database(database_url(tmp_path))
    snapshotter, store = await snapshotted(event_log, db)
    await snapshotter.stop()
    return db, store


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "in-process"])
async def test_reports_from_snapshots_equal_full_folds(
    nc: Client, event_log: EventLog, tmp_path: Path, fork: bool
) -> None:
    written = await publish(nc.jetstream(), BigLog(EVENTS, seed=3).events())
    assert written == EVENTS
    db = Database(database_url(tmp_path))
    snapshotter, store = await snapshotted(event_log, db, fork)
    try:
        described = await snapshotter.describe()
        assert described["folded_position"] == EVENTS and described["snapshots"] > 0
        count, size, newest = await store.stats()
        assert count == EVENTS // EVERY and size > 0 and newest == EVERY * count
        now = datetime.now(UTC)
        # Cuts at recorded times between snapshots, on a snapshot, and now.
        for position in (EVERY // 2, EVERY, EVERY * 3 + 17, EVENTS - 5):
            moment = await _stored_time(event_log, position)
            cut = Cut(as_of=moment)
            end = await position_at(event_log, moment)
            assert end >= position
            fast = await fold(event_log, cut, snapshots=store)
            slow = await fold(event_log, cut)
            assert fast.position == slow.position == end
            assert comparable(documents.portfolio(fast, now)) == comparable(
                documents.portfolio(slow, now)
            )
            used = await store.latest(end)
            assert (used is not None) == (end >= EVERY)
        _, fast_now = await portfolio_report(event_log, Cut(), now, snapshots=store)
        _, slow_now = await portfolio_report(event_log, Cut(), now)
        assert comparable(fast_now) == comparable(slow_now)
        assert fast_now["projects"]["total"] > 0
    finally:
        await snapshotter.stop()
        await db.close()


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "in-process"])
async def test_snapshots_in_parts_equal_full_folds_and_share_their_parts(
    nc: Client, event_log: EventLog, tmp_path: Path, fork: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's big levels stored apart (levels of 8 items and more here) and the big
    tables in chunks (tables of 4 entries and more, chunks of 4 on average): reports
    from them equal full folds, consecutive snapshots share parts, and a part lost on
    disk costs the snapshots that need it, never the report."""
    monkeypatch.setattr(snapshot_format, "PART_MIN_ITEMS", 8)
    monkeypatch.setattr(snapshot_tables, "MIN_ENTRIES", 4)
    monkeypatch.setattr(snapshot_tables, "CHUNK_EVERY", 4)
    await publish(nc.jetstream(), BigLog(EVENTS, seed=4).events())
    db = Database(database_url(tmp_path))
    snapshotter, store = await snapshotted(event_log, db, fork)
    parts = snapshots_module.parts_table
    try:
        assert store._known and set(store._known) <= set(map(id, store._pins))
        assert len(store._layouts) == len(snapshot_tables.GROUPS)
        rows = await db.read(
            lambda conn: conn.execute(
                snapshots_module.snapshots_table.select().order_by("position")
            ).all()
        )
        referred = [snapshot_format.digests_of(row.state) for row in rows]
        assert sum(map(bool, referred)) >= len(rows) - 1
        stored = await db.read(lambda conn: conn.execute(parts.select()).all())
        sizes = {row.digest: row.size for row in stored}
        referred_bytes = sum(sizes[d] for digests in referred for d in digests)
        # Each part stored once; here (20 projects, all of them busy) a fifth of the bytes
        # is referred to again, at a million events seven tenths (bench/million.py).
        assert 0 < sum(sizes.values()) < referred_bytes * 0.8
        count, size, _ = await store.stats()
        own = sum(len(row.state) for row in rows)
        assert (count, size) == (len(rows), own + sum(row.size for row in stored))
        await same_as_full_folds_at(event_log, store, (EVERY * 2 + 1, EVENTS // 2, EVENTS - 3))
        newest, before = referred[-1], set().union(*referred[:-1])
        only_newest = next(d for d in newest if d not in before)
        await db.write(
            lambda conn: conn.execute(parts.delete().where(parts.c.digest == only_newest))
        )
        found = await store.latest()
        assert found is not None and found.position == rows[-2].position
        await same_as_a_full_fold(event_log, store)
    finally:
        await snapshotter.stop()
        await db.close()


@pytest.mark.parametrize("previous", ["one pickle", "tables inline", "chunks in one group"])
async def test_a_data_folder_of_the_previous_version_is_continued_in_parts(
    nc: Client,
    event_log: EventLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    previous: str,
) -> None:
    """Snapshots the previous versions stored (one pickle each; then the ledger's levels
    in parts and the tables inline; then a project's five tables in chunks of one group,
    the same fold code) are kept: the snapshotter goes on from the newest of them instead
    of folding the log again, the ones it adds are in parts with the tables in chunks of
    today's groups, and reports from either equal full folds."""
    monkeypatch.setattr(snapshot_format, "PART_MIN_ITEMS", 8)
    monkeypatch.setattr(snapshot_tables, "CHUNK_EVERY", 4)
    await publish(nc.jetstream(), BigLog(EVENTS, seed=12).events())
    db = Database(database_url(tmp_path))
    store = SnapshotStore(db, fork=False)
    await store.create()
    old_until = EVERY * 3
    report = PortfolioReport()
    async for event in event_log.read(1, until_position=old_until):
        report.apply(event)
        if event.position % EVERY:
            continue
        if previous == "one pickle":
            pickled = pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
            await _insert(db, store, event.position, snapshot_format.pack(pickled))
        else:
            with monkeypatch.context() as before:
                if previous == "tables inline":
                    before.setattr(snapshot_tables, "MIN_ENTRIES", 1 << 30)
                else:
                    before.setattr(snapshot_tables, "MIN_ENTRIES", 4)
                    store_chunks_as_the_first_version(before)
                parts = store.begin(event.position, report).parts
            assert parts is not None and parts.new
            await db.write(store._save, event.position, parts)
    monkeypatch.setattr(snapshot_tables, "MIN_ENTRIES", 4)
    store = SnapshotStore(db)  # the new version's process
    snapshotter, store = await snapshotted(event_log, db, store=store)
    try:
        assert snapshotter.read + snapshotter.handed == EVENTS - old_until
        table = snapshots_module.snapshots_table
        rows = await db.read(
            lambda conn: conn.execute(table.select().order_by(table.c.position)).all()
        )
        assert [row.position for row in rows] == list(range(EVERY, EVENTS + 1, EVERY))
        old = [row for row in rows if row.position <= old_until]
        magic = (
            snapshot_format.ZSTD_MAGIC if previous == "one pickle" else snapshot_format.PARTS_MAGIC
        )
        assert all(row.state.startswith(magic) for row in old)
        assert all(_chunked(row.state) == (previous == "chunks in one group") for row in old)
        new = [row for row in rows if row.position > old_until]
        assert all(row.state.startswith(snapshot_format.PARTS_MAGIC) for row in new)
        assert all(_chunked(row.state) for row in new)
        positions = (EVERY * 2 + 7, old_until + EVERY + 3, EVENTS - 1)
        await same_as_full_folds_at(event_log, store, positions)
    finally:
        await snapshotter.stop()
        await db.close()


def _chunked(blob: bytes) -> bool:
    """Whether a stored snapshot keeps any table in chunks."""
    return snapshot_tables.Chunked.__name__.encode() in snapshot_format.unpack(
        blob[blob.index(snapshot_format.ZSTD_MAGIC, len(snapshot_format.PARTS_MAGIC)) :]
        if blob.startswith(snapshot_format.PARTS_MAGIC)
        else blob
    )


async def _insert(db: Database, store: SnapshotStore, position: int, state: bytes) -> None:
    table = snapshots_module.snapshots_table
    row = {
        "position": position,
        "fingerprint": store.fingerprint,
        "taken_at": datetime.now(UTC).replace(tzinfo=None),
        "size": len(state),
        "state": state,
    }
    await db.write(lambda conn: conn.execute(table.insert(), row))


async def test_a_child_that_dies_costs_its_snapshot_only(
    nc: Client, event_log: EventLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forked child that dies mid-snapshot (killed, out of memory) loses that snapshot,
    never the fold: the next ones are stored and reports stay equal to a full fold."""
    if not snapshots_module.CAN_FORK:
        pytest.skip("snapshots are pickled in-process here")
    await publish(nc.jetstream(), BigLog(1200, seed=6).events())
    real_pack = snapshot_format.pack

    def dies_first(pickled: bytes) -> bytes:
        if os.getpid() != parent and positions[0] == 0:  # the first snapshot's child
            os.kill(os.getpid(), signal.SIGKILL)
        return real_pack(pickled)

    parent, positions = os.getpid(), [0]
    monkeypatch.setattr(snapshot_format, "pack", dies_first)
    db = Database(database_url(tmp_path))
    snapshotter = Snapshotter(SimpleNamespace(log=event_log, db=db), every=EVERY, poll=0.05)
    store = SnapshotStore(db, fork=True)
    begin = store.begin

    def counted(position: int, report: Any, touched: Any = ()) -> Any:
        pending = begin(position, report, touched)
        positions[0] += 1  # after the fork: only the first child sees 0
        return pending

    monkeypatch.setattr(store, "begin", counted)
    await snapshotter.start(store)
    try:
        for _ in range(600):
            if snapshotter.position >= 1200:
                break
            await asyncio.sleep(0.05)
        await snapshotter.flush()
        count, _, newest = await store.stats()
        assert (count, newest) == (1200 // EVERY - 1, 1200)
        assert await store.latest(EVERY) is None  # the first one's child was killed
        await same_as_a_full_fold(event_log, store)
    finally:
        await snapshotter.stop()
        await db.close()


async def test_snapshots_of_other_code_are_ignored(
    nc: Client, event_log: EventLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, store = await stored_with_snapshots(nc, event_log, tmp_path, 1000, 4)
    try:
        assert await store.latest() is not None
        monkeypatch.setattr(snapshots_module, "fingerprint", lambda: "other-code")
        changed = SnapshotStore(db)
        assert await changed.latest() is None
        await same_as_a_full_fold(event_log, changed)
    finally:
        await db.close()


async def test_a_damaged_snapshot_costs_a_longer_fold_never_the_report(
    nc: Client, event_log: EventLog, tmp_path: Path
) -> None:
    """The newest snapshot's bytes damaged on disk (cut short, overwritten, in no known
    format): the report folds from the one before it, equal to a full fold."""
    db, store = await stored_with_snapshots(nc, event_log, tmp_path, 1300, 8)
    table = snapshots_module.snapshots_table
    try:
        newest = await store.latest()
        assert newest is not None and newest.position == 1200
        good = await db.read(
            lambda conn: conn.execute(table.select().where(table.c.position == 1200)).one().state
        )
        for damaged in (good[: len(good) // 2], b"\x00" * 64, good[:4] + b"\x00" * 60):
            await _overwrite(db, 1200, damaged)
            found = await store.latest()
            assert found is not None and found.position == 800
            await same_as_a_full_fold(event_log, store)
    finally:
        await db.close()


async def test_snapshots_stored_as_xz_by_the_previous_version_are_read(
    nc: Client, event_log: EventLog, tmp_path: Path
) -> None:
    """Snapshots the previous version stored (xz) open with this one: a report from them
    equals a full fold, and the new ones beside them are Zstandard."""
    db, store = await stored_with_snapshots(nc, event_log, tmp_path, 900, 9)
    table = snapshots_module.snapshots_table
    try:
        rows = await db.read(lambda conn: conn.execute(table.select()).all())
        assert rows and all(row.state.startswith(b"\x28\xb5\x2f\xfd") for row in rows)
        for row in rows:  # rewritten as the previous version stored them
            old = lzma.compress(
                snapshot_format.unpack(row.state),
                format=lzma.FORMAT_XZ,
                check=lzma.CHECK_NONE,
                preset=0,
            )
            await _overwrite(db, row.position, old)
        found = await store.latest()
        assert found is not None and found.position == 800
        await same_as_a_full_fold(event_log, store)
    finally:
        await db.close()


async def _overwrite(db: Database, position: int, state: bytes) -> None:
    """The stored bytes of the snapshot at `position`, replaced as on disk."""
    table = snapshots_module.snapshots_table
    await db.write(
        lambda conn: conn.execute(
            table.update().where(table.c.position == position).values(state=state)
        )
    )


async def _two_ways(
    event_log: EventLog,
    cut: Cut,
    earlier: Cut,
    store: SnapshotStore | None,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The portfolio report at `cut` with its changes since `earlier` (in place of the day
    before), as the service builds it and, the oracle, folded once per cut; and whether
    the service folded it in one pass."""
    now = datetime.now(UTC)
    monkeypatch.setattr(timetravel, "previous_day", lambda _cut, _now: earlier)
    real, passes = timetravel._fold_through, []

    async def counted(*args: Any) -> Any:
        found = await real(*args)
        passes.append(found is not None)
        return found

    async def never(*_: Any) -> None:
        return None

    monkeypatch.setattr(timetravel, "_fold_through", counted)
    _, served = await portfolio_report(event_log, cut, now, snapshots=store)
    monkeypatch.setattr(timetravel, "_fold_through", never)
    _, two_folds = await portfolio_report(event_log, cut, now, snapshots=store)
    monkeypatch.undo()
    return comparable(served), comparable(two_folds), passes == [True]


@pytest.mark.parametrize("with_snapshots", [True, False], ids=["snapshots", "no-snapshots"])
async def test_a_report_and_its_day_before_in_one_pass_equal_two_folds(
    nc: Client,
    event_log: EventLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    with_snapshots: bool,
) -> None:
    """A report's changes since the day before come from one pass over the log (the
    earlier cut's summary taken on the way) when no snapshot lies between the two cuts,
    and equal folding each cut alone: cuts between two snapshots, on one, the same cut
    twice; with a snapshot between them each cut folds from its own."""
    db, store = await stored_with_snapshots(nc, event_log, tmp_path, 2000, 10)
    try:
        positions = (300, 420, 790, 800, 1210, 1590, 1990)
        times = {p: await _stored_time(event_log, p) for p in positions}
        pairs = [  # (earlier, later, one pass with snapshots every 400)
            (420, 790, True),
            (800, 800, True),
            (1210, 1590, True),
            (300, 1210, False),
            (790, 1990, False),
            (1210, None, False),
        ]
        for before, after, in_one_pass in pairs:
            earlier = Cut(as_of=times[before])
            cut = Cut(as_of=None if after is None else times[after])
            served, two_folds, one_pass = await _two_ways(
                event_log, cut, earlier, store if with_snapshots else None, monkeypatch
            )
            assert served == two_folds
            assert one_pass == (in_one_pass or not with_snapshots)
            since = served["changes"]["since"]
            assert since["kind"] == "previous_day" and since["position"] >= before
            assert since["as_of"] == times[before].isoformat()
    finally:
        await db.close()


@pytest.mark.parametrize("with_snapshots", [True, False], ids=["snapshots", "no-snapshots"])
async def test_a_report_published_between_the_cuts_is_what_changes_are_measured_from(
    nc: Client,
    event_log: EventLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    with_snapshots: bool,
) -> None:
    """A report published after the day before: the changes are measured from it, not
    from the day before, whether the publication lies between the cuts or before both."""
    await publish(nc.jetstream(), BigLog(1200, seed=12).events())
    now = datetime.now(UTC)
    published = await publish_report(event_log, PublishRequest(rationale="month end"), now, 10**7)
    assert published is not None
    db = Database(database_url(tmp_path))
    snapshotter, store = await snapshotted(event_log, db)
    await snapshotter.stop()
    try:
        last = await event_log.last_position()
        assert last == 1201
        for before in (1100, 1201):  # the publication between the cuts, then before both
            earlier = Cut(as_of=await _stored_time(event_log, before))
            served, two_folds, _ = await _two_ways(
                event_log, Cut(), earlier, store if with_snapshots else None, monkeypatch
            )
            assert served == two_folds
            assert served["changes"]["since"]["kind"] == "published"
    finally:
        await db.close()


async def test_an_event_recorded_after_the_earlier_cut_but_stored_before_it(
    nc: Client, event_log: EventLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An intake whose clock runs ahead of the server's: an event stored before the
    earlier cut but recorded after it belongs to the later report only. Folded in one
    pass it would be left out of both; the report is folded once per cut instead."""
    envelopes = list(BigLog(1200, seed=11).events())
    ahead = datetime.now(UTC) + timedelta(hours=1)
    envelopes[699] = envelopes[699].model_copy(update={"recorded_at": ahead})
    await publish(nc.jetstream(), iter(envelopes))
    earlier = Cut(as_of=await _stored_time(event_log, 900))
    served, two_folds, one_pass = await _two_ways(event_log, Cut(), earlier, None, monkeypatch)
    assert served == two_folds and not one_pass
    assert served["cut"]["position"] == 1200 and served["cut"]["events"] == 1200


async def test_position_at_a_time(nc: Client, event_log: EventLog) -> None:
    await publish(nc.jetstream(), BigLog(300, seed=5).events())
    last = await event_log.last_position()
    middle = await _stored_time(event_log, 150)
    assert await position_at(event_log, middle) >= 150
    assert await position_at(event_log, middle) < last or middle >= await _stored_time(
        event_log, last
    )
    assert await position_at(event_log, datetime.now(UTC) + timedelta(days=1)) == last
    first = await _stored_time(event_log, 1)
    assert await position_at(event_log, first - timedelta(seconds=1)) == 0


async def _stored_time(event_log: EventLog, position: int) -> datetime:
    """When the server stored the message at `position` (what `--as-of` cuts by)."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=position,
        ack_policy=AckPolicy.NONE,
    )
    sub = await event_log.js.pull_subscribe(
        event_log.subjects.events_all, stream=LOG_STREAM, config=config
    )
    try:
        (msg,) = await sub.fetch(1, timeout=5)
        stamp: datetime = msg.metadata.timestamp
        return stamp
    finally:
        await sub.unsubscribe()
