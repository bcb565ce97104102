"""Loading an aggregate's current state for a decision.

A bounded in-memory cache in front of the log: a hit is only a guess, because the append's
expected-sequence check catches a stale one and the handler then reloads from the log.
Each loaded aggregate also knows the commands already in its history: a command repeated
after any time (beyond the stream's duplicate window, after a restart) is recognised from
the log itself, with no database lookup on the hot path.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from contracts.base import AppendedEvent, CommandAccepted, RecordedEvent
from contracts.registry import payload_of
from domain.deciders import evolve
from shared import chain
from shared.eventlog import EventLog


@dataclass(frozen=True)
class Loaded:
    state: Any
    version: int
    last_position: int
    #: Ids of the commands whose events the aggregate's history holds. It grows in place as
    #: commands land (a copy per append would cost as much as the history is long).
    commands: set[str] = field(default_factory=set)
    #: The hash-chain link of the last event (shared/chain.py): what the next one chains to.
    #: None: not known here, the log is asked at append.
    last_link: str | None = None


def new_aggregate() -> Loaded:
    """What an aggregate that has no events yet looks like."""
    return Loaded(state=None, version=0, last_position=0, last_link=chain.GENESIS)


class AggregateStore:
    def __init__(self, log: EventLog, capacity: int = 50_000) -> None:
        self.log = log
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        #: Per aggregate with a command being decided: its lock and how many hold or wait.
        self._turns: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def turn(self, key: tuple[str, str]) -> AsyncIterator[None]:
        """One command of an aggregate decided at a time in this process. Decided side by
        side, every command but one would lose the append's expected-position check and
        decide again; an import's burst of rows for one project ran out of retries so.
        (Other intake processes are still caught by that check.)"""
        entry = self._turns.get(key)
        if entry is None:
            entry = self._turns[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._turns[key]

    async def load(self, key: tuple[str, str]) -> Loaded:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        return self._remember(key, fold(await self.log.read_aggregate(*key)))

    def cached(self, key: tuple[str, str]) -> Loaded | None:
        return self._cache.get(key)

    async def history(self, key: tuple[str, str]) -> list[RecordedEvent]:
        self._cache.pop(key, None)
        return await self.log.read_aggregate(*key)

    async def catch_up(
        self, key: tuple[str, str], stale: Loaded
    ) -> tuple[Loaded, list[RecordedEvent]]:
        """`stale` (lost an append's expected-position check) with the aggregate's events
        since folded on, and those events (the last `len(since)` versions): a pool a million
        events long has thousands of its own, and another writer's one or two are all that
        changed. With none since (a log not as the cache remembers it), the whole history
        is folded again."""
        self._cache.pop(key, None)
        since = await self.log.read_aggregate(*key, after=stale.last_position)
        if not since:
            history = await self.log.read_aggregate(*key)
            return fold(history), history
        return fold(since, onto=stale), since

    def advance(self, key: tuple[str, str], loaded: Loaded) -> None:
        self._remember(key, loaded)

    def forget(self, key: tuple[str, str]) -> None:
        self._cache.pop(key, None)

    def _remember(self, key: tuple[str, str], loaded: Loaded) -> Loaded:
        self._cache[key] = loaded
        self._cache.move_to_end(key)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return loaded


def fold(history: list[RecordedEvent], onto: Loaded | None = None) -> Loaded:
    """`history` folded onto `onto` (the events that follow it; default: an aggregate with
    no events yet). `onto` is dropped: its set of command ids grows on in the result."""
    base = new_aggregate() if onto is None else onto
    if not history:
        return base
    state = base.state
    for recorded in history:
        state = evolve(state, payload_of(recorded.envelope))
    base.commands.update(recorded.envelope.causation_id for recorded in history)
    return Loaded(
        state=state,
        version=base.version + len(history),
        last_position=history[-1].position,
        commands=base.commands,
        last_link=chain.link_of(history[-1].envelope),
    )


def reply_from_history(
    history: list[RecordedEvent], command_id: str, first_version: int = 1
) -> CommandAccepted | None:
    """The answer a command got the first time, if its events are already in the log
    (`history`: the aggregate's events from version `first_version` on)."""
    events = tuple(
        AppendedEvent(
            event_id=r.envelope.event_id,
            event_type=r.envelope.event_type,
            aggregate_type=r.envelope.aggregate_type,
            aggregate_id=r.envelope.aggregate_id,
            position=r.position,
            version=version,
        )
        for version, r in enumerate(history, start=first_version)
        if r.envelope.causation_id == command_id
    )
    if not events:
        return None
    return CommandAccepted(command_id=command_id, events=events, duplicate=True)
