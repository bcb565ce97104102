"""The fold's big keyed tables, stored in chunks that consecutive snapshots share.

A project's profile, facts, baseline, EAC series and actual cost, and every risk, were
pickled whole in every snapshot: at a million events 1.1 MB of the 1.2 MB a snapshot
stored, though between two snapshots (10,000 events) about a tenth of the projects
change. Each group of tables below is now cut into chunks, each stored once as a part and
referred to by digest (snapshot_format.py), and a snapshot stores only the chunks that are
new.

A chunk holds, for each of its keys, the entries of every table of its group, pickled
together (so what they share, such as a project's profile in prioritization's view and in
the project's facts, stays shared when loaded). A project's profile and facts, which
change at its decisions, are one group; its baseline, EAC series and actual cost, which
change every month it runs, another: in one group, every snapshot stored a running
project's unchanged profile and facts again with its new costs (at a million events 43.8
MB of snapshots against 41.1 in two).

For most chunks to be the same from one snapshot to the next, keys are kept in
the order they were last touched: those no event touched since the last snapshot in the
order they had there, then the others, in the table's order. An event touches the
entries keyed by its aggregate and by its payload's `project_id`; the snapshotter notes
them as it folds (`note`). Chunk boundaries fall after keys whose hash says so
(content-defined chunking, as rsync and restic do), so a key that moves or is added
changes the chunk it leaves and the last ones only. Where each key was is remembered by
the process that stores the snapshots (`TableLayout`): after a restart the first snapshot
stores every chunk once more.

Which entries moved only decides how much is stored again, never what a snapshot holds:
a chunk is the pickle of the entries' values as they are, found by its digest. Values
shared between chunks (an amount two projects both hold) are loaded as equal copies.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from contracts.base import EventEnvelope
from services.reporting.report import PortfolioReport

Path = tuple[str, ...]
#: The tables stored in chunks, by their path from the report, in groups with the same
#: keys (a group's tables are chunked together).
GROUPS: tuple[tuple[Path, ...], ...] = (
    (("view", "candidates"), ("projects",)),
    (("baselines",), ("eac_points",), ("actual_cost",)),
    (("risks",),),
)
#: The groups of the snapshots stored before a `Chunked` named its group (they are read
#: as they were stored).
FIRST_GROUPS: tuple[tuple[Path, ...], ...] = (
    (("view", "candidates"), ("projects",), ("baselines",), ("eac_points",), ("actual_cost",)),
    (("risks",),),
)
#: Groups with fewer keys stay in the snapshot's own pickle.
MIN_ENTRIES = 256
#: One key in this many ends a chunk (32 keys a chunk on average: at a million events 16
#: and 64 stored 10% more and 2% less in all).
CHUNK_EVERY = 32
#: The digest parts are stored by (snapshot_format.py), chunks and levels alike.
DIGEST_SIZE = 16


class _Absent:
    """A key a table of the group does not have."""

    def __reduce__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


@dataclass(frozen=True)
class TableLayout:
    """A group as the last snapshot stored it: its keys in chunk order."""

    order: tuple[Hashable, ...] = ()


def note(touched: set[Hashable], envelope: EventEnvelope) -> None:
    """The keys of the entries `envelope` may change, into `touched`."""
    touched.add(envelope.aggregate_id)
    project_id = envelope.payload.get("project_id")
    if project_id is not None:
        touched.add(project_id)


@dataclass(frozen=True)
class Chunked:
    """A table in a snapshot's own pickle: its keys in the table's order and the digests
    of the chunks holding its entries (its group's)."""

    keys: tuple[Hashable, ...]
    chunks: tuple[bytes, ...]
    default: bool = False
    #: The tables whose entries each chunk holds, in their order; None in the snapshots
    #: stored before it was kept (their groups were FIRST_GROUPS).
    group: tuple[Path, ...] | None = None


@dataclass
class Split:
    """A report cut for storing: the report with its big tables replaced by `Chunked`,
    each chunk's bytes by digest, and each group's layout for the next snapshot."""

    report: PortfolioReport
    chunks: dict[bytes, bytes] = field(default_factory=dict)
    layouts: dict[str, TableLayout] = field(default_factory=dict)


def split(
    report: PortfolioReport,
    layouts: Mapping[str, TableLayout],
    touched: Collection[Hashable] = (),
) -> Split:
    """The report with its big groups of tables (`MIN_ENTRIES` keys and more) in chunks,
    laid out from `layouts` with the keys `touched` since moved last."""
    out = Split(report)
    for group in GROUPS:
        tables = [_get(report, path) for path in group]
        keys = dict.fromkeys(key for table in tables for key in table)
        if len(keys) < MIN_ENTRIES:
            continue
        name = _name(group)
        layout, chunks = _chunks(tables, keys, layouts.get(name, TableLayout()), touched)
        out.layouts[name] = layout
        out.chunks.update(chunks)
        digests = tuple(chunks)
        # Tables filled by the same events list their keys in the same order (a project's
        # profile and facts; its baseline, EAC series and actual cost): one tuple, pickled
        # once, instead of three times 3,000 references at a million events.
        orders: dict[tuple[Hashable, ...], tuple[Hashable, ...]] = {}
        for path, table in zip(group, tables, strict=True):
            order = tuple(table)
            order = orders.setdefault(order, order)
            placeholder = Chunked(order, digests, isinstance(table, defaultdict), group)
            out.report = _with(out.report, path, placeholder)
    return out


def join(report: PortfolioReport, chunks: Callable[[bytes], bytes]) -> PortfolioReport:
    """The report with each `Chunked` table read back from its group's chunks, the group
    as the snapshot was stored with (not GROUPS as they are now)."""
    loaded: dict[tuple[bytes, ...], dict[Hashable, tuple[Any, ...]]] = {}
    for path in _PATHS:
        placeholder = _get(report, path)
        if not isinstance(placeholder, Chunked):
            continue
        group = placeholder.group or _first_group(path)
        entries = loaded.get(placeholder.chunks)
        if entries is None:
            for member in group:  # a group is in chunks whole or not at all
                if not isinstance(_get(report, member), Chunked):
                    raise ValueError(f"a snapshot with {_name(group)} half in chunks")
            entries = loaded[placeholder.chunks] = {}
            for digest in placeholder.chunks:
                entries.update(pickle.loads(chunks(digest)))
        index = group.index(path)  # not in its group: ValueError, the snapshot is unreadable
        table: dict[Hashable, Any] = defaultdict(Decimal) if placeholder.default else {}
        for key in placeholder.keys:
            value = entries[key][index]  # missing: KeyError, the snapshot is unreadable
            if value is ABSENT:
                raise KeyError(key)
            table[key] = value
        _set(report, path, table)
    return report


def _chunks(
    tables: Sequence[Mapping[Hashable, Any]],
    keys: Mapping[Hashable, None],
    before: TableLayout,
    touched: Collection[Hashable],
) -> tuple[TableLayout, dict[bytes, bytes]]:
    kept = [key for key in before.order if key in keys and key not in touched]
    placed = set(kept)
    order = (*kept, *(key for key in keys if key not in placed))
    chunks: dict[bytes, bytes] = {}
    for chunk in _cut(order):
        entries = [(key, tuple(table.get(key, ABSENT) for table in tables)) for key in chunk]
        data = pickle.dumps(entries, pickle.HIGHEST_PROTOCOL)
        chunks[hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()] = data
    return TableLayout(order), chunks


def _cut(order: tuple[Hashable, ...]) -> Iterator[list[Hashable]]:
    chunk: list[Hashable] = []
    for key in order:
        chunk.append(key)
        if _ends_chunk(key):
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ends_chunk(key: Hashable) -> bool:
    mark = hashlib.blake2b(repr(key).encode(), digest_size=4).digest()
    return int.from_bytes(mark) % CHUNK_EVERY == 0


def _name(group: tuple[Path, ...]) -> str:
    return "+".join(".".join(path) for path in group)


def _first_group(path: Path) -> tuple[Path, ...]:
    found = next((g for g in FIRST_GROUPS if path in g), None)
    if found is None:  # a snapshot naming no group for a table chunked only since
        raise ValueError(f"a snapshot with {'.'.join(path)} in chunks of no known group")
    return found


#: Every table stored in chunks now or before.
_PATHS: tuple[Path, ...] = tuple(
    dict.fromkeys(path for groups in (GROUPS, FIRST_GROUPS) for group in groups for path in group)
)


def _get(report: PortfolioReport, path: Path) -> Any:
    found: Any = report
    for name in path:
        found = getattr(found, name)
    return found


def _set(report: PortfolioReport, path: Path, value: Any) -> None:
    setattr(_get(report, path[:-1]), path[-1], value)


def _with(report: PortfolioReport, path: Path, value: Any) -> PortfolioReport:
    """A copy of the report with `value` at `path`, sharing everything else: the fold goes
    on meanwhile when the snapshot is taken in the service itself."""
    top = copy.copy(report)
    holder: Any = top
    for name in path[:-1]:
        inner = copy.copy(getattr(holder, name))
        setattr(holder, name, inner)
        holder = inner
    setattr(holder, path[-1], value)
    return top
