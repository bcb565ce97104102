"""The fold's big keyed tables, stored in chunks that consecutive snapshots share.

A project's profile, facts, baseline, EAC series and actual cost, and every risk, were
pickled whole in every snapshot: at a million events 1.1 MB of the 1.2 MB a snapshot
stored, though between two snapshots (10,000 events) about a tenth of the projects
change. Each table is now cut into chunks, each stored once as a part and referred to by
digest (snapshot_format.py), and a snapshot stores only the chunks that are new.

For most chunks to be the same from one snapshot to the next, entries are kept in the
order they were last touched: those no event touched since the last snapshot in the
order they had there, then the others, in the table's order. An event touches the
entries keyed by its aggregate and by its payload's `project_id`; the snapshotter notes
them as it folds (`note`). Chunk boundaries fall after keys whose hash says so
(content-defined chunking, as rsync and restic do), so an entry that moves or is added
changes the chunk it leaves and the last ones only. Where each entry was is remembered by
the process that stores the snapshots (`TableLayout`): after a restart the first snapshot
stores every chunk once more.

Which entries moved only decides how much is stored again, never what a snapshot holds:
a chunk is the pickle of the entries' values as they are, found by its digest. Values
shared between chunks are loaded as equal copies, except a project's profile, which the
fold shares between prioritization's view and the project's facts: the facts' chunks
refer to it by key (`SHARES`).
"""

from __future__ import annotations

import copy
import hashlib
import io
import pickle
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from contracts.base import EventEnvelope
from services.reporting.report import PortfolioReport

#: The tables stored in chunks, by their path from the report.
TABLES: tuple[tuple[str, ...], ...] = (
    ("view", "candidates"),
    ("projects",),
    ("baselines",),
    ("eac_points",),
    ("actual_cost",),
    ("risks",),
)
#: A table whose chunks refer to another's values by key where the fold shares them: a
#: project's profile is prioritization's view's own (report.py, `_shared_profile`).
SHARES = {"projects": "view.candidates"}
#: Tables with fewer entries stay in the snapshot's own pickle.
MIN_ENTRIES = 256
#: One key in this many ends a chunk (32 entries a chunk on average: at a million events
#: 16 and 64 stored 10% more and 2% less in all).
CHUNK_EVERY = 32
#: The digest parts are stored by (snapshot_format.py), chunks and levels alike.
DIGEST_SIZE = 16


@dataclass(frozen=True)
class TableLayout:
    """A table as the last snapshot stored it: its keys in chunk order."""

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
    of the chunks holding its entries."""

    keys: tuple[Hashable, ...]
    chunks: tuple[bytes, ...]
    default: bool = False


@dataclass
class Split:
    """A report cut for storing: the report with its big tables replaced by `Chunked`,
    each chunk's bytes by digest, and each table's layout for the next snapshot."""

    report: PortfolioReport
    chunks: dict[bytes, bytes] = field(default_factory=dict)
    layouts: dict[str, TableLayout] = field(default_factory=dict)


def split(
    report: PortfolioReport,
    layouts: Mapping[str, TableLayout],
    touched: Collection[Hashable] = (),
) -> Split:
    """The report with its big tables (`MIN_ENTRIES` entries and more) in chunks, laid
    out from `layouts` with the entries `touched` since moved last."""
    out = Split(report)
    for path in TABLES:
        table = _get(report, path)
        if len(table) < MIN_ENTRIES:
            continue
        name = ".".join(path)
        shared = _get(report, tuple(SHARES[name].split("."))) if name in SHARES else {}
        layout, chunks = _chunks(table, layouts.get(name, TableLayout()), touched, shared)
        out.layouts[name] = layout
        out.chunks.update(chunks)
        placeholder = Chunked(tuple(table), tuple(chunks), isinstance(table, defaultdict))
        out.report = _with(out.report, path, placeholder)
    return out


def join(report: PortfolioReport, chunks: Callable[[bytes], bytes]) -> PortfolioReport:
    """The report with each `Chunked` table read back from its chunks' bytes."""
    for path in TABLES:
        placeholder = _get(report, path)
        if not isinstance(placeholder, Chunked):
            continue
        name = ".".join(path)
        shared = _get(report, tuple(SHARES[name].split("."))) if name in SHARES else {}
        entries: dict[Hashable, Any] = {}
        for digest in placeholder.chunks:
            entries.update(_Unpickler(io.BytesIO(chunks(digest)), shared).load())
        table: dict[Hashable, Any] = defaultdict(Decimal) if placeholder.default else {}
        for key in placeholder.keys:
            table[key] = entries[key]  # a missing entry: KeyError, the snapshot is unreadable
        _set(report, path, table)
    return report


def _chunks(
    table: Mapping[Hashable, Any],
    before: TableLayout,
    touched: Collection[Hashable],
    shared: Mapping[Hashable, Any],
) -> tuple[TableLayout, dict[bytes, bytes]]:
    kept = [key for key in before.order if key in table and key not in touched]
    placed = set(kept)
    order = (*kept, *(key for key in table if key not in placed))
    refs = {id(value): key for key, value in shared.items()}
    chunks: dict[bytes, bytes] = {}
    for keys in _cut(order):
        entries = [(key, table[key]) for key in keys]
        if refs:
            out = io.BytesIO()
            _Pickler(out, refs).dump(entries)
            data = out.getvalue()
        else:  # no call for every object
            data = pickle.dumps(entries, pickle.HIGHEST_PROTOCOL)
        chunks[_digest(data)] = data
    return TableLayout(order), chunks


class _Pickler(pickle.Pickler):
    """Pickles a value of the shared table (`refs`: its key by the value's `id`) as its
    key."""

    def __init__(self, out: io.BytesIO, refs: Mapping[int, Hashable]) -> None:
        super().__init__(out, pickle.HIGHEST_PROTOCOL)
        self.refs = refs

    def persistent_id(self, obj: Any) -> Hashable | None:
        return self.refs.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: io.BytesIO, shared: Mapping[Hashable, Any]) -> None:
        super().__init__(data)
        self.shared = shared

    def persistent_load(self, pid: Any) -> Any:
        return self.shared[pid]  # a value that is not there: KeyError, unreadable


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


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def _get(report: PortfolioReport, path: tuple[str, ...]) -> Any:
    found: Any = report
    for name in path:
        found = getattr(found, name)
    return found


def _set(report: PortfolioReport, path: tuple[str, ...], value: Any) -> None:
    setattr(_get(report, path[:-1]), path[-1], value)


def _with(report: PortfolioReport, path: tuple[str, ...], value: Any) -> PortfolioReport:
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
