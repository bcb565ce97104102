"""Every command id in the log, so that an id is used for one command only.

A command id is the idempotency key: a repeat of the same command gets its first answer.
The same id on another aggregate or another command is refused (`conflict`), naming its
first use. Deciding that must not cost a database read per command: the index lives in
memory, one entry per command (the id's 64-bit hash -> the position of its first event,
about 100 bytes), loaded at start from intake's projection (table `intake_commands`, built
from the log with everything else) and kept current by the projection and by intake's own
appends. Only a hit (a retry, or a reuse) reads the first event back from the log, which is
the record of what the id was used for. Two arrivals of one id at the same moment are kept
apart in memory (handlers.py); a copy of intake racing this one meets the stream's
duplicate window (event ids derive from the command id), which handlers.py checks too.
"""

from __future__ import annotations

import asyncio


class CommandIds:
    def __init__(self) -> None:
        self._first: dict[int, int] = {}
        #: Set once the index holds every command of the log as it was at start.
        self.ready = asyncio.Event()

    def add(self, command_id: str, position: int) -> None:
        key = hash(command_id)
        known = self._first.get(key)
        if known is None or position < known:
            self._first[key] = position

    def first_position(self, command_id: str) -> int | None:
        """Where the command's first event is, if the id was used (a hash collision is
        possible: the caller checks the event found)."""
        return self._first.get(hash(command_id))

    def __len__(self) -> int:
        return len(self._first)
