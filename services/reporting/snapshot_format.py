"""How a snapshot of the report fold is stored: a pickle compressed with Zstandard, whose
largest immutable pieces are stored apart, once each, and referred to by digest.

Those pieces are the levels of the ledger's layered maps and reference sets (a pool's cost
cells, a role's demand and hours, domain/ledger/persistent.py). A level never changes once
made, and the big ones live long: the largest holds half a map's cells and is rebuilt only
when the map doubles. Stored apart, consecutive snapshots share them instead of each
storing every cell again (at a million events, pools and roles were half of a snapshot's
bytes and a third of the time pickling it), and a level the previous snapshot already
stored is not even pickled again: the snapshotter remembers its digest by the level's
`id`, which stays that level's own while the snapshotter holds on to it (`pinned_levels`).

A snapshot stored before (one pickle in Zstandard, xz or zlib) is read as it always was.
"""

from __future__ import annotations

import copyreg
import gc
import hashlib
import io
import lzma
import pickle
import struct
import zlib
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import zstandard

from domain.ledger.persistent import LayeredMap, RefSet
from services.reporting import snapshot_tables
from services.reporting.report import PortfolioReport
from services.reporting.snapshot_tables import TableLayout

#: Zstandard at level 15. Snapshots were one pickle at level 9 (against xz at its fastest
#: preset: 3% bigger, packed in 0.30 s instead of 0.52, unpacked in 0.03 s instead of 0.20).
#: Stored in parts, each snapshot packs only its new chunks and levels, a tenth of a fold:
#: at level 15 they are 8% smaller (a million events: 48.1 -> 44.2 MB in all) for 0.07 s
#: more of the child's time a snapshot, and unpack as fast.
ZSTD_LEVEL = 15
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZLIB_FIRST = 0x78  # a zlib stream's first byte (deflate, 32 KiB window)
#: A snapshot in parts: this, the count of its parts' digests, the digests, then the
#: pickle of the rest in Zstandard.
PARTS_MAGIC = b"PFSP\x01"
_COUNT = struct.Struct(">I")
DIGEST_SIZE = snapshot_tables.DIGEST_SIZE
#: Levels with fewer items stay inline: a part costs a row and a frame of its own.
PART_MIN_ITEMS = 32


def pack(pickled: bytes) -> bytes:
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    return compressor.compress(pickled)


def unpack(state: bytes) -> bytes:
    """The pickle stored in one of the three single-pickle forms."""
    if state.startswith(ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().decompress(state)
    if state.startswith(_XZ_MAGIC):
        return lzma.decompress(state)
    if state[:1] == bytes((_ZLIB_FIRST,)):
        return zlib.decompress(state)
    raise ValueError(f"a snapshot in no known format (first bytes {state[:6].hex()})")


#: What reading a damaged snapshot raises (a truncated or altered blob, a bad pickle, a
#: part that is missing).
UNREADABLE = (
    ValueError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
    pickle.UnpicklingError,
    struct.error,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
)

Level = Mapping[Any, Any] | frozenset[str]


def pinned_levels(report: PortfolioReport) -> list[Level]:
    """The levels a snapshot may store as parts: the big ones of the fold's pools and
    roles. The snapshotter keeps this list until the next snapshot, so that an `id` it
    remembers a digest by is never reused by another object meanwhile."""
    levels: list[Level] = []
    for states in (report.pools.values(), report.roles.values()):
        for state in states:
            for value in vars(state).values():
                if isinstance(value, LayeredMap | RefSet):
                    levels.extend(lv for lv in value.levels if len(lv) >= PART_MIN_ITEMS)
    return levels


@dataclass(frozen=True)
class SnapshotParts:
    """A snapshot ready to store: its own bytes, the parts not stored before (digest to
    packed pickle), every level part's digest by the `id` of its level and every chunked
    table's layout (both for the next one)."""

    blob: bytes
    new: dict[bytes, bytes] = field(default_factory=dict)
    ids: dict[int, bytes] = field(default_factory=dict)
    layouts: dict[str, TableLayout] = field(default_factory=dict)

    def digests(self) -> list[bytes]:
        return digests_of(self.blob)


def dump(
    report: PortfolioReport,
    pinned: Collection[int],
    known: Mapping[int, bytes],
    stored: Collection[bytes],
    layouts: Mapping[str, TableLayout] | None = None,
    touched: Collection[Hashable] = (),
) -> SnapshotParts:
    """The report in parts: the levels whose id is `pinned` apart (those in `known` by
    the digest remembered, without pickling them again), the big tables in chunks laid
    out from `layouts` and the keys `touched` since (snapshot_tables.py), the rest in
    one pickle. A part whose digest is `stored` already is not packed again."""
    cut = snapshot_tables.split(report, layouts or {}, touched)
    out = io.BytesIO()
    pickler = _PartsPickler(out, pinned, known, stored)
    pickler.dump(cut.report)
    for digest, data in cut.chunks.items():
        if digest not in stored and digest not in pickler.new:
            pickler.new[digest] = pack(data)
    used = list(dict.fromkeys([*pickler.ids.values(), *cut.chunks]))
    if not used:  # a small fold: one pickle, as snapshots were before
        return SnapshotParts(pack(out.getvalue()))
    header = PARTS_MAGIC + _COUNT.pack(len(used)) + b"".join(used)
    return SnapshotParts(header + pack(out.getvalue()), pickler.new, pickler.ids, cut.layouts)


def digests_of(blob: bytes) -> list[bytes]:
    """The digests of the parts a stored snapshot refers to (none for a single pickle)."""
    if not blob.startswith(PARTS_MAGIC):
        return []
    (count,) = _COUNT.unpack_from(blob, len(PARTS_MAGIC))
    start = len(PARTS_MAGIC) + _COUNT.size
    end = start + count * DIGEST_SIZE
    if len(blob) < end:
        raise ValueError("a snapshot cut short in its list of parts")
    return [blob[i : i + DIGEST_SIZE] for i in range(start, end, DIGEST_SIZE)]


def load(blob: bytes, parts: Callable[[list[bytes]], Mapping[bytes, bytes]]) -> PortfolioReport:
    """The report a stored snapshot holds; `parts` gives the packed parts it refers to."""
    if blob.startswith(PARTS_MAGIC):
        digests = digests_of(blob)
        body = len(PARTS_MAGIC) + _COUNT.size + len(digests) * DIGEST_SIZE
        pickled, found = unpack(blob[body:]), parts(digests)
    else:
        pickled, found = unpack(blob), {}
    # Millions of objects, none of them garbage: collecting while they are made only
    # walks them again and again (a quarter of the load's time), and so would the passes
    # after, which found them all young (the slowest report as of a past time at a million
    # events, in-process: 1.45-1.60 s with them, 1.21-1.25 s without). They are kept out
    # of the passes instead (frozen: a report holds no cycles, and is freed by reference
    # counting when done). Freezing takes the whole
    # heap: the young garbage of the moment is collected first; a cycle that died in the
    # oldest generation since its last pass is kept for good (the process's own objects,
    # frozen at start by shared.service.tune_collector, are in the same generation).
    paused = gc.isenabled()
    gc.collect(1)
    gc.disable()
    try:
        report = _PartsUnpickler(io.BytesIO(pickled), found).load()
        if isinstance(report, PortfolioReport):
            report = snapshot_tables.join(report, lambda digest: unpack(found[digest]))
    finally:
        gc.freeze()
        if paused:
            gc.enable()
    if not isinstance(report, PortfolioReport):
        raise TypeError(f"a snapshot of a {type(report).__name__}, not a report")
    return report


def _layered(levels: tuple[Mapping[Any, Any], ...], removed: int) -> LayeredMap[Any, Any]:
    return LayeredMap(levels, removed)


def _refs(levels: tuple[frozenset[str], ...]) -> RefSet:
    return RefSet(levels)


class _PartsPickler(pickle.Pickler):
    def __init__(
        self,
        out: io.BytesIO,
        pinned: Collection[int],
        known: Mapping[int, bytes],
        stored: Collection[bytes],
    ) -> None:
        self.pinned, self.known, self.stored = pinned, known, stored
        self.new: dict[bytes, bytes] = {}
        self.ids: dict[int, bytes] = {}
        # Looked up by type in C: the rest of the fold pickles as fast as without.
        self.dispatch_table = copyreg.dispatch_table.copy()
        self.dispatch_table[LayeredMap] = self._reduce_layered
        self.dispatch_table[RefSet] = self._reduce_refs
        super().__init__(out, pickle.HIGHEST_PROTOCOL)

    def _reduce_layered(self, value: LayeredMap[Any, Any]) -> tuple[Any, ...]:
        return _layered, (tuple(map(self._part, value.levels)), value.removed)

    def _reduce_refs(self, value: RefSet) -> tuple[Any, ...]:
        return _refs, (tuple(map(self._part, value.levels)),)

    def _part(self, level: Level) -> Level | bytes:
        """A level, or the digest it is stored apart by."""
        key = id(level)
        if key not in self.pinned:
            return level
        digest = self.known.get(key)
        if digest is None:
            pickled = pickle.dumps(level, pickle.HIGHEST_PROTOCOL)
            digest = hashlib.blake2b(pickled, digest_size=DIGEST_SIZE).digest()
            if digest not in self.stored and digest not in self.new:
                self.new[digest] = pack(pickled)
        self.ids[key] = digest
        return digest


class _PartsUnpickler(pickle.Unpickler):
    """Resolves the digests in place of levels. What `find_class` hands out must not refer
    back to the unpickler: its memo holds every object of the report, and a cycle through
    it would keep the report alive after use (frozen, until the process ends)."""

    def __init__(self, data: io.BytesIO, parts: Mapping[bytes, bytes]) -> None:
        super().__init__(data)
        self.resolve = _Levels(parts)

    def find_class(self, module: str, name: str) -> Any:
        level = self.resolve
        if module == __name__ and name == "_layered":
            return lambda levels, removed: _layered(tuple(map(level, levels)), removed)
        if module == __name__ and name == "_refs":
            return lambda levels: _refs(tuple(map(level, levels)))
        return super().find_class(module, name)


class _Levels:
    """The levels a snapshot's digests stand for, each unpickled once."""

    def __init__(self, parts: Mapping[bytes, bytes]) -> None:
        self.parts = parts
        self.loaded: dict[bytes, Level] = {}

    def __call__(self, part: Level | bytes) -> Any:
        if not isinstance(part, bytes):
            return part
        level = self.loaded.get(part)
        if level is None:  # a missing part raises KeyError: the snapshot is unreadable
            level = self.loaded[part] = pickle.loads(unpack(self.parts[part]))
        return level
