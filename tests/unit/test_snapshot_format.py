"""Snapshots in parts: the levels of the ledger's maps stored apart, shared by consecutive
snapshots, and a report loaded from them that is the fold it was taken of. The oracle is
the fold itself, read through the maps' public interface and the report's document."""

from __future__ import annotations

import gc
import json
import pickle
import weakref
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.biglog import BigLog
from contracts.base import RecordedEvent
from domain.ledger.persistent import LayeredMap, RefSet
from services.reporting import documents, snapshot_format
from services.reporting.report import PortfolioReport

EVENTS = 2400
EVERY = 200
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def events() -> list[RecordedEvent]:
    envelopes = BigLog(EVENTS, seed=5, recorded_at=datetime(2026, 1, 5, tzinfo=UTC)).events()
    return [RecordedEvent(position=n, envelope=e) for n, e in enumerate(envelopes, start=1)]


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Levels of 8 items and more are parts: a small log has many."""
    monkeypatch.setattr(snapshot_format, "PART_MIN_ITEMS", 8)


class Stored:
    """What the store keeps between snapshots, as SnapshotStore keeps it."""

    def __init__(self) -> None:
        self.parts: dict[bytes, bytes] = {}
        self.known: dict[int, bytes] = {}
        self.pins: list[object] = []

    def take(self, report: PortfolioReport) -> snapshot_format.SnapshotParts:
        pins = snapshot_format.pinned_levels(report)
        taken = snapshot_format.dump(report, set(map(id, pins)), self.known, set(self.parts))
        self.parts.update(taken.new)
        self.known, self.pins = taken.ids, list(pins)
        return taken

    def load(self, blob: bytes) -> PortfolioReport:
        return snapshot_format.load(blob, lambda digests: {d: self.parts[d] for d in digests})


def ledger_contents(report: PortfolioReport) -> dict[str, Any]:
    """Every layered map and reference set of the pools and roles, as plain values."""
    found: dict[str, Any] = {}
    for kind, states in (("pool", report.pools), ("role", report.roles)):
        for key, state in states.items():
            for name, value in vars(state).items():
                if isinstance(value, LayeredMap):
                    found[f"{kind}/{key}/{name}"] = dict(value.items())
                elif isinstance(value, RefSet):
                    found[f"{kind}/{key}/{name}"] = set(value)
    return found


def document(report: PortfolioReport) -> Any:
    return json.loads(json.dumps(documents.portfolio(report, NOW), default=str))


def test_a_report_loaded_from_parts_is_the_fold_it_was_taken_of(
    events: list[RecordedEvent],
) -> None:
    stored, report, in_parts = Stored(), PortfolioReport(), 0
    for event in events:
        report.apply(event)
        if event.position % EVERY:
            continue
        snapshot = stored.take(report)
        in_parts += snapshot.blob.startswith(snapshot_format.PARTS_MAGIC)
        loaded = stored.load(snapshot.blob)
        assert ledger_contents(loaded) == ledger_contents(report)
        assert document(loaded) == document(report)
        # ... and folds on to the same report as the fold it was taken of.
        rest = events[event.position :]
        assert document(loaded.apply_all(rest)) == document(PortfolioReport().apply_all(events))
    assert in_parts >= EVENTS // EVERY - 2  # all but the first, whose maps are small


def test_consecutive_snapshots_share_their_parts(events: list[RecordedEvent]) -> None:
    stored, report = Stored(), PortfolioReport()
    referred = new = 0
    for event in events:
        report.apply(event)
        if event.position % EVERY == 0:
            snapshot = stored.take(report)
            referred += sum(len(stored.parts[d]) for d in snapshot.digests())
            new += sum(map(len, snapshot.new.values()))
    assert new < referred / 2  # each part stored once, most of them referred to again


def test_a_report_unchanged_is_taken_again_without_a_new_part(
    events: list[RecordedEvent],
) -> None:
    stored = Stored()
    report = PortfolioReport().apply_all(events)
    first = stored.take(report)
    again = stored.take(report)
    assert first.new and not again.new
    assert again.digests() == first.digests() and again.blob == first.blob


def test_only_levels_pinned_are_stored_apart(events: list[RecordedEvent]) -> None:
    """A digest is remembered by a level's id, which is that level's own only while it is
    held (pinned): a level not pinned stays inline, however big."""
    report = PortfolioReport().apply_all(events)
    pins = snapshot_format.pinned_levels(report)
    pinned = set(map(id, pins[::2]))
    taken = snapshot_format.dump(report, pinned, {}, set())
    assert taken.ids and set(taken.ids) <= pinned
    inline = snapshot_format.dump(report, set(), {}, set())
    assert inline.blob.startswith(snapshot_format.ZSTD_MAGIC) and not inline.ids


def test_small_maps_stay_one_pickle_as_before(
    events: list[RecordedEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_format, "PART_MIN_ITEMS", 1 << 30)
    report = PortfolioReport().apply_all(events[:500])
    snapshot = Stored().take(report)
    assert snapshot.blob.startswith(snapshot_format.ZSTD_MAGIC) and not snapshot.new
    loaded = pickle.loads(snapshot_format.unpack(snapshot.blob))
    assert document(loaded) == document(report)


def test_a_part_missing_makes_the_snapshot_unreadable(events: list[RecordedEvent]) -> None:
    stored = Stored()
    snapshot = stored.take(PortfolioReport().apply_all(events))
    del stored.parts[snapshot.digests()[0]]
    with pytest.raises(snapshot_format.UNREADABLE):
        stored.load(snapshot.blob)


def test_a_loaded_report_is_kept_out_of_the_collectors_passes_and_freed_when_done(
    events: list[RecordedEvent],
) -> None:
    """The collector would walk every object of a loaded report in its next passes (a
    fifth of a report as of a past time at a million events); kept out of them (frozen),
    it is still freed, by reference counting, once the report is done with: nothing the
    load leaves behind refers to it."""
    stored = Stored()
    snapshot = stored.take(PortfolioReport().apply_all(events))

    def load() -> tuple[int, weakref.ref[PortfolioReport]]:
        frozen = gc.get_freeze_count()
        loaded = stored.load(snapshot.blob)
        assert loaded.projects
        return gc.get_freeze_count() - frozen, weakref.ref(loaded)

    newly_frozen, gone = load()
    assert newly_frozen > 1000
    assert gone() is None
