"""The fold's big tables in chunks that consecutive snapshots share (snapshot_tables.py).

Two oracles written apart from the code: the fold itself (a report loaded from chunks has
the same tables in the same order, the same document, and folds on to the same report),
and a plain dict edited at random beside the table, with the bound a content-defined
layout promises: after `m` keys touched, at most `2m + 1` chunks of a group are new (the
chunk each touched key leaves, the last chunk of the rest, the chunks of the moved ones),
and none when nothing was touched."""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.biglog import BigLog
from contracts.base import RecordedEvent
from services.reporting import documents, snapshot_format, snapshot_tables
from services.reporting.report import PortfolioReport
from tests.previous_snapshots import store_chunks_as_the_first_version

EVENTS = 2400
EVERY = 300
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def events() -> list[RecordedEvent]:
    envelopes = BigLog(EVENTS, seed=9, recorded_at=datetime(2026, 1, 5, tzinfo=UTC)).events()
    return [RecordedEvent(position=n, envelope=e) for n, e in enumerate(envelopes, start=1)]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables of 4 entries and more in chunks of 4 on average: a small log has many."""
    monkeypatch.setattr(snapshot_tables, "MIN_ENTRIES", 4)
    monkeypatch.setattr(snapshot_tables, "CHUNK_EVERY", 4)


class Store:
    """What SnapshotStore keeps between snapshots, and the snapshotter's touched keys."""

    def __init__(self) -> None:
        self.parts: dict[bytes, bytes] = {}
        self.layouts: dict[str, snapshot_tables.TableLayout] = {}
        self.touched: set[Any] = set()

    def take(self, report: PortfolioReport) -> snapshot_format.SnapshotParts:
        taken = snapshot_format.dump(report, set(), {}, set(self.parts), self.layouts, self.touched)
        self.parts.update(taken.new)
        self.layouts, self.touched = taken.layouts, set()
        return taken

    def load(self, blob: bytes) -> PortfolioReport:
        return snapshot_format.load(blob, lambda digests: {d: self.parts[d] for d in digests})


def tables(report: PortfolioReport) -> dict[str, list[tuple[Any, Any]]]:
    return {
        ".".join(path): list(snapshot_tables._get(report, path).items())
        for group in snapshot_tables.GROUPS
        for path in group
    }


def entries(table: Mapping[str, object]) -> list[tuple[str, object]]:
    """A table's entries in order (the tests stand integers in for its values)."""
    return list(table.items())


def document(report: PortfolioReport) -> Any:
    return json.loads(json.dumps(documents.portfolio(report, NOW), default=str))


def test_a_report_loaded_from_chunks_is_the_fold_it_was_taken_of(
    events: list[RecordedEvent],
) -> None:
    store, report, full = Store(), PortfolioReport(), PortfolioReport().apply_all(events)
    chunked = 0
    for event in events:
        report.apply(event)
        snapshot_tables.note(store.touched, event.envelope)
        if event.position % EVERY:
            continue
        snapshot = store.take(report)
        chunked += len(snapshot.layouts)
        loaded = store.load(snapshot.blob)
        assert tables(loaded) == tables(report)  # the same entries, in the same order
        assert isinstance(loaded.actual_cost, defaultdict)
        for project_id, facts in loaded.projects.items():
            shared = report.projects[project_id].profile is report.view.candidates[project_id]
            assert (facts.profile is loaded.view.candidates[project_id]) == shared
        assert document(loaded) == document(report)
        # ... and folds on to the same report as the fold it was taken of.
        assert document(loaded.apply_all(events[event.position :])) == document(full)
    assert chunked >= len(snapshot_tables.GROUPS) * (EVENTS // EVERY) - 2  # nearly always


def test_an_unchanged_report_is_taken_again_without_a_new_chunk(
    events: list[RecordedEvent],
) -> None:
    store = Store()
    report = PortfolioReport().apply_all(events)
    first = store.take(report)
    again = store.take(report)
    assert first.new and first.layouts and not again.new
    assert again.blob == first.blob


def test_tables_listing_the_same_keys_in_the_same_order_share_one_list_in_the_snapshot(
    events: list[RecordedEvent],
) -> None:
    report = PortfolioReport().apply_all(events)
    report.eac_points = dict(reversed(report.eac_points.items()))  # one order of its own
    cut = snapshot_tables.split(report, {})
    seen = set()
    for group in snapshot_tables.GROUPS:
        orders = [tuple(snapshot_tables._get(report, path)) for path in group]
        stored = [snapshot_tables._get(cut.report, path).keys for path in group]
        for a in range(len(group)):
            assert stored[a] == orders[a]
            for b in range(a + 1, len(group)):
                assert (stored[a] is stored[b]) == (orders[a] == orders[b])
                seen.add(orders[a] == orders[b])
    assert seen == {True, False}  # both kinds here


def test_chunks_stored_before_their_group_was_named_are_read_in_the_first_groups(
    events: list[RecordedEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunked snapshots held a project's five tables in one group and named no
    group: their chunks are read in that group, whatever GROUPS are now."""
    store, report = Store(), PortfolioReport().apply_all(events)
    with monkeypatch.context() as first:
        store_chunks_as_the_first_version(first)
        snapshot = store.take(report)
    assert set(snapshot.layouts) == {snapshot_tables._name(g) for g in snapshot_tables.FIRST_GROUPS}
    assert snapshot_tables.GROUPS != snapshot_tables.FIRST_GROUPS
    loaded = store.load(snapshot.blob)
    assert tables(loaded) == tables(report)
    assert document(loaded) == document(report)


@pytest.mark.parametrize(
    "group",
    [(("projects",),), (("no", "such"), ("view", "candidates")), None],
    ids=["its table not named", "a table that is not there", "no group, none before"],
)
def test_a_chunked_table_with_a_wrong_group_makes_the_snapshot_unreadable(
    events: list[RecordedEvent],
    monkeypatch: pytest.MonkeyPatch,
    group: tuple[tuple[str, ...], ...] | None,
) -> None:
    cut = snapshot_tables.split(PortfolioReport().apply_all(events), {})
    path = ("view", "candidates")
    placeholder = snapshot_tables._get(cut.report, path)
    report = snapshot_tables._with(cut.report, path, replace(placeholder, group=group))
    monkeypatch.setattr(snapshot_tables, "FIRST_GROUPS", ((("risks",),)))
    with pytest.raises(snapshot_format.UNREADABLE):
        snapshot_tables.join(report, cut.chunks.__getitem__)


def test_a_chunk_missing_makes_the_snapshot_unreadable(events: list[RecordedEvent]) -> None:
    store = Store()
    snapshot = store.take(PortfolioReport().apply_all(events))
    placeholder = snapshot_tables.split(PortfolioReport().apply_all(events), {}).report.risks
    assert isinstance(placeholder, snapshot_tables.Chunked)
    del store.parts[placeholder.chunks[-1]]
    with pytest.raises(snapshot_format.UNREADABLE):
        store.load(snapshot.blob)


KEYS = st.sampled_from([f"P-{n:03d}" for n in range(60)])
EDIT = st.tuples(st.sampled_from(["set", "remove", "untold"]), KEYS, st.integers(0, 3))


@settings(max_examples=60, deadline=None)
@given(first=st.dictionaries(KEYS, st.integers(0, 3)), rounds=st.lists(st.lists(EDIT), max_size=6))
def test_chunks_follow_a_plain_dict_and_only_touched_entries_cost_new_chunks(
    first: dict[str, int], rounds: list[list[tuple[str, str, int]]]
) -> None:
    model = dict(first)
    store, report = Store(), PortfolioReport()

    def take_and_check(told_everything: bool) -> None:
        report.risks = dict(model)  # type: ignore[arg-type]
        report.actual_cost = defaultdict(Decimal, {k: Decimal(v) for k, v in model.items()})
        touched = len(store.touched)
        before = set(store.parts)
        snapshot = store.take(report)
        loaded = store.load(snapshot.blob)
        assert entries(loaded.risks) == entries(model)
        assert list(loaded.actual_cost.items()) == [(k, Decimal(v)) for k, v in model.items()]
        if told_everything and before and len(model) >= snapshot_tables.MIN_ENTRIES:
            new_chunks = [d for d in snapshot.digests() if d not in before]
            assert len(new_chunks) <= 2 * (2 * touched + 1)  # two groups

    take_and_check(False)
    for edits in rounds:
        told = True
        for kind, key, value in edits:
            if kind == "remove":
                model.pop(key, None)
            else:
                model[key] = value
            if kind == "untold":  # a change nobody noted: only more is stored, never wrong
                told = False
            else:
                store.touched.add(key)
        take_and_check(told)


def chunk_entries(store: Store, digests: list[bytes]) -> list[list[Any]]:
    """The keys in each chunk (a chunk is the pickle of its entries, key and value)."""
    found = []
    for digest in digests:
        entries = pickle.loads(snapshot_format.unpack(store.parts[digest]))
        if isinstance(entries, list):
            found.append([key for key, _ in entries])
    return found


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(40, 200),
    hot=st.sets(st.integers(0, 199), min_size=1, max_size=30),
    rounds=st.integers(2, 4),
)
def test_entries_touched_again_and_again_gather_in_the_last_chunks(
    size: int, hot: set[int], rounds: int
) -> None:
    """The few entries that keep changing (a portfolio's running projects) end up
    together: once they have moved, storing them again rewrites at most one chunk's
    worth of entries that did not change."""
    keys = [f"P-{n:03d}" for n in range(size)]
    hot_keys = {keys[n] for n in hot if n < size}
    model = dict.fromkeys(keys, 0)
    store, report = Store(), PortfolioReport()
    report.risks = model  # type: ignore[assignment]
    previous = store.take(report)
    for round_ in range(rounds):
        for key in hot_keys:
            model[key] += 1
            store.touched.add(key)
        known = set(store.parts)
        snapshot = store.take(report)
        assert entries(store.load(snapshot.blob).risks) == entries(model)
        if round_ >= 1:
            longest = max(map(len, chunk_entries(store, previous.digests())))
            new = [d for d in snapshot.digests() if d not in known]
            rewritten = [k for chunk in chunk_entries(store, new) for k in chunk]
            assert len([k for k in rewritten if k not in hot_keys]) <= longest
        previous = snapshot
