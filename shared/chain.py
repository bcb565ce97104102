"""The log's hash chain: every event names, by hash, what came before it.

Two chains, one written and one derived:

- **Per aggregate, written.** The writer (`EventLog.append`) adds `chain_hash` to every
  envelope: SHA-256 of the previous event's link on the same aggregate and the envelope's
  canonical JSON (sorted keys, no spaces, UTF-8; the envelope without `chain_hash`). The
  writer knows the previous event anyway (one writer per aggregate: the append is checked
  against the aggregate's last position), so linking costs no round trip and no
  coordination between writers: a log-wide chain would serialise every append of every
  service behind one expected position.
- **Log-wide, derived.** `head_P = SHA-256(head_{P-1}, P, link_P)` over every position in
  order. Nobody writes it; `verify_chain` and the report fold compute it, and every
  `PortfolioReportPublished` carries the head at the position it was computed at, so the
  history behind what stakeholders were told is pinned.

Events written before the chain existed (no `chain_hash`) still fold: they are
**pre-chain**, linked by the digest of their envelope as parsed, and allowed only before
the first chained event of the log. After it, an event without a hash is a break.

What `verify_chain` detects: an event whose content changed (its hash no longer matches);
an event written by anything but the portfolio's writers that carries no hash, a wrong
hash or is not an envelope at all (e.g. a raw `nats pub`, possible on the embedded server,
which has no authentication); an event that is not on its aggregate's subject; a position
missing from the log (deleted or skipped in a copied store); a published report whose
pinned head differs from the recomputed one (history before it rewritten, even if every
later hash was recomputed to match).

What it does not detect: a forger who knows the algorithm (there is no secret) and appends
a correctly hashed event; a rewrite of the tail after the last published report, with all
hashes recomputed; a copied store truncated after its last event. Those need the head
kept outside the log: a published report a stakeholder holds, or `portfolio audit
--verify`'s head written down, which any later verification must reproduce.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from contracts.base import EventEnvelope

try:  # the same bytes, several times faster; json alone when it is not installed
    import orjson
except ImportError:  # pragma: no cover - orjson comes with the services' dependencies
    orjson = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from shared.eventlog import EventLog

FIELD = "chain_hash"
#: The link before an aggregate's first event, and the head before position 1.
GENESIS = ""
#: What every envelope has (a sealed one is checked by its hash, not parsed again).
_ENVELOPE_FIELDS = frozenset(
    name for name, info in EventEnvelope.model_fields.items() if info.is_required()
)
#: Fields left out of a pre-chain event's digest (they did not exist before the chain).
_NEWER_FIELDS = frozenset({FIELD, "command"})


def canonical(document: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, no NaN.

    The definition is `json.dumps(document, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False, allow_nan=False)`, UTF-8 encoded. A document of strings, integers,
    booleans, nulls, lists and objects with string keys (every envelope without a float)
    is written by orjson, which writes exactly those bytes for such values (keys sorted by
    code point, the same escapes); anything else (a float, whose shortest form orjson
    writes differently, or what orjson refuses) goes through `json`."""
    return _canonical(document, orjson is not None and _plain(document))


def _canonical(document: Any, plain: bool) -> bytes:
    if plain and orjson is not None:
        try:
            return bytes(orjson.dumps(document, option=orjson.OPT_SORT_KEYS))
        except TypeError:  # a lone surrogate, an integer beyond 64 bits, nesting too deep
            pass
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _plain(value: Any) -> bool:
    """Only JSON's own types other than floats, with string keys (exact types: a subclass,
    e.g. an enum, is left to `json`)."""
    kind = type(value)
    if kind is dict:
        if any(type(key) is not str for key in value):
            return False
        items: Any = value.values()
    elif kind is list:
        items = value
    else:
        return kind is str or kind is int or kind is bool or value is None
    for item in items:
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if not _plain(item):
            return False
    return True


def _parse(data: bytes) -> tuple[Any, bool]:
    """`json.loads(data)`, and whether it is plain (`_plain`). Parsed by orjson when the
    result is plain (it parses those exactly as json does), else by json itself (floats,
    and what orjson refuses)."""
    if orjson is not None:
        try:
            document = orjson.loads(data)
        except ValueError:  # e.g. an escaped lone surrogate, a byte-order mark
            return json.loads(data), False
        if _plain(document):
            return document, True
    return json.loads(data), False


def link(previous: str, document: dict[str, Any]) -> str:
    """The hash of an envelope (`document`, without `chain_hash`) after `previous`."""
    return _link(previous, canonical(document))


def _link(previous: str, canonical_json: bytes) -> str:
    digest = hashlib.sha256(previous.encode())
    digest.update(b"\n")
    digest.update(canonical_json)
    return digest.hexdigest()


def seal(data: bytes, previous: str) -> tuple[bytes, str]:
    """An envelope's JSON as the writer serialised it (without `chain_hash`), with its hash
    added as the last field; and that hash. The hash covers the very bytes' content."""
    document, plain = _parse(data)
    if not isinstance(document, dict) or FIELD in document or not data.endswith(b"}"):
        raise ValueError("not an unsealed envelope")
    hashed = _link(previous, _canonical(document, plain))
    return data[:-1] + b',"' + FIELD.encode() + b'":"' + hashed.encode() + b'"}', hashed


def pre_chain_link(envelope: EventEnvelope) -> str:
    """The link of an event written before the chain: the digest of its envelope as parsed
    (so a reader that only has the parsed envelope computes the same)."""
    return link(GENESIS, envelope.model_dump(mode="json", exclude=set(_NEWER_FIELDS)))


def link_of(envelope: EventEnvelope) -> str:
    """What the next event of the same aggregate chains to."""
    return envelope.chain_hash or pre_chain_link(envelope)


def advance(head: str, position: int, event_link: str) -> str:
    """The log-wide head after the event at `position`."""
    return hashlib.sha256(f"{head}\n{position}\n{event_link}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    position: int
    reason: str


@dataclass
class ChainVerification:
    """The outcome of walking the log: the first break, if any, and the head reached."""

    end: int = 0
    checked: int = 0
    pre_chain: int = 0
    reports_checked: int = 0
    head: str = GENESIS
    broken: ChainBreak | None = None


#: How many recent log-wide heads a walk keeps to check the heads reports pinned.
RECENT_HEADS = 100_000


@dataclass
class ChainWalker:
    """Checks one event after another, in log order, from raw stored bytes. Pure."""

    events_prefix: str
    result: ChainVerification = field(default_factory=ChainVerification)
    _previous: dict[str, str] = field(default_factory=dict)
    _chained: bool = False
    _heads: OrderedDict[int, str] = field(default_factory=OrderedDict)

    def feed(self, position: int, subject: str, data: bytes) -> ChainBreak | None:
        """Check the event at `position`; the break it is, if any (and the walk stops)."""
        if self.result.broken is not None:
            return self.result.broken
        expected = self.result.checked + 1
        if position != expected:
            return self._break(expected, f"position {expected} is missing from the log")
        reason, event_link = self._link(subject, data)
        if reason is not None:
            return self._break(position, reason)
        assert event_link is not None
        self._previous[subject] = event_link
        self.result.head = advance(self.result.head, position, event_link)
        self._heads[position] = self.result.head
        if len(self._heads) > RECENT_HEADS:
            self._heads.popitem(last=False)
        self.result.checked = position
        pinned = self._pinned_break(position, data)
        return self._break(position, pinned) if pinned else None

    def _link(self, subject: str, data: bytes) -> tuple[str | None, str | None]:
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as error:
            return f"not an event envelope: {type(error).__name__}", None
        if not isinstance(document, dict) or not document.keys() >= _ENVELOPE_FIELDS:
            return "not an event envelope: fields missing", None
        own = f"{self.events_prefix}.{document['aggregate_type']}.{document['aggregate_id']}"
        if subject != own:
            return f"an event of {own} stored on {subject}", None
        previous = self._previous.get(subject, GENESIS)
        stored = document.pop(FIELD, None)
        if stored is None:
            if self._chained:
                return "no chain hash after the chain began (not written by the portfolio)", None
            try:
                envelope = EventEnvelope.model_validate(document)
            except ValidationError as error:
                return f"not an event envelope: {type(error).__name__}", None
            self.result.pre_chain += 1
            return None, pre_chain_link(envelope)
        self._chained = True
        if stored != link(previous, document):
            return (
                "chain hash does not match: the event was changed, or its aggregate's "
                "previous event was",
                None,
            )
        return None, str(stored)

    def _pinned_break(self, position: int, data: bytes) -> str | None:
        """A published report pins the log-wide head it was computed at."""
        if b'"PortfolioReportPublished"' not in data:
            return None
        payload = json.loads(data).get("payload") or {}
        pinned = payload.get("chain_head")
        if not isinstance(pinned, dict):
            return None
        at, expected = pinned.get("position"), pinned.get("hash")
        if not isinstance(at, int) or at not in self._heads:
            return None
        self.result.reports_checked += 1
        if self._heads[at] != expected:
            return (
                f"the report at {position} pinned head {str(expected)[:16]}... at position "
                f"{at}; the log gives {self._heads[at][:16]}...: history up to {at} was rewritten"
            )
        return None

    def _break(self, position: int, reason: str) -> ChainBreak:
        self.result.broken = ChainBreak(position, reason)
        return self.result.broken


#: Called as the walk goes: (position reached, last position).
Progress = Callable[[int, int], None]


async def verify_chain(
    event_log: EventLog, progress: Progress | None = None, every: int = 1000
) -> ChainVerification:
    """Recompute both chains over the whole log as it stands now (up to its last position
    when the walk begins); stops at the first break. A read that cannot complete raises
    (`LogUnavailable`): a verification is never silently partial."""
    end = await event_log.last_position()
    walker = ChainWalker(event_log.subjects.events_all.removesuffix(".>"))
    walker.result.end = end
    async for position, subject, data in event_log.read_raw(1, until_position=end):
        if walker.feed(position, subject, data) is not None:
            break
        if progress is not None and position % every == 0:
            progress(position, end)
    if walker.result.broken is None and walker.result.checked != end:
        walker.feed(end + 1, "", b"")  # names the first position the read did not deliver
    if progress is not None:
        progress(walker.result.checked, end)
    return walker.result
