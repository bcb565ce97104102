"""What the dashboard shows, taken from where it already exists: the portfolio report folded
from the log, the other services' answers to their own queries, the audit trail in
reporting's projection. An answer is kept until the next event arrives, and computed again
at most once per interval, however many browsers ask."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import nats.errors

from contracts.queries import AuditEntry, AuditQuery
from services.reporting import timetravel
from services.reporting.facts import Cut
from services.reporting.projection import ReportingProjection
from shared.service import ServiceRuntime

if TYPE_CHECKING:
    from services.reporting.snapshots import SnapshotStore

#: Where the report's fold may start from a snapshot (read when a report is made).
SnapshotsOf = Callable[[], "SnapshotStore | None"]

#: How long a page waits for a service to apply the latest events before asking it.
SETTLE_SECONDS = 2.0


class NotAnswered(Exception):
    """A service that did not answer (not running, too slow) or refused the question."""


@dataclass
class _Entry:
    generation: int
    computed_at: float
    value: Any


class Cache:
    """Answers by key, valid until `changed()`; computed at most once per `interval`."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.generation = 0
        self._entries: dict[str, _Entry] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def changed(self) -> None:
        self.generation += 1

    async def get(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        async with self._locks[key]:
            entry = self._entries.get(key)
            if entry is not None:
                if entry.generation == self.generation:
                    return entry.value
                wait = entry.computed_at + self.interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            # Taken before computing: an event landing meanwhile makes the answer stale.
            generation = self.generation
            value = await compute()
            self._entries[key] = _Entry(generation, time.monotonic(), value)
            return value


class Sources:
    """The dashboard's reads, each a coroutine; `changed()` when an event arrives."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        projection: ReportingProjection,
        interval: float,
        snapshots: SnapshotsOf = lambda: None,
    ) -> None:
        self.runtime = runtime
        self.projection = projection
        self.cache = Cache(interval)
        self.snapshots = snapshots

    def changed(self) -> None:
        self.cache.changed()

    async def report(self) -> dict[str, Any]:
        """The portfolio report now (the same answer as `portfolio report --json`)."""

        async def compute() -> dict[str, Any]:
            _, found = await timetravel.portfolio_report(
                self.runtime.log, Cut(), _now(), snapshots=self.snapshots()
            )
            return found

        found: dict[str, Any] = await self.cache.get("report", compute)
        return found

    async def scorecard(self, project_id: str) -> dict[str, Any]:
        """A project's scorecard now (`portfolio report --project`); `UnknownProject` if the
        log has no such project."""

        async def compute() -> dict[str, Any]:
            return await timetravel.scorecard(self.runtime.log, Cut(), project_id, _now())

        found: dict[str, Any] = await self.cache.get(f"scorecard:{project_id}", compute)
        return found

    async def ask(self, service: str, name: str, body: dict[str, Any] | None = None) -> Any:
        """A service's answer to one of its queries, once it has applied the log so far."""
        data = json.dumps(body or {}, sort_keys=True).encode()

        async def compute() -> Any:
            await self._settled(service)
            subject = self.runtime.settings.subjects.query(service, name)
            try:
                msg = await self.runtime.nc.request(subject, data, timeout=5)
            except nats.errors.NoRespondersError:
                raise NotAnswered(f"{service} is not running") from None
            except TimeoutError:
                raise NotAnswered(f"{service} did not answer in time") from None
            answer = json.loads(msg.data)
            if isinstance(answer, dict) and "error" in answer:
                raise NotAnswered(f"{service}: {answer['error']}")
            return answer

        return await self.cache.get(f"{service}.{name}:{data.decode()}", compute)

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        """The audit trail as `portfolio audit` filters it, up to the latest event."""
        await self._projection_settled()
        entries: list[AuditEntry] = await self.runtime.db.read(self.projection.audit_entries, query)
        return entries

    async def latest_events(self, count: int) -> list[AuditEntry]:
        """The last `count` entries of the audit trail, newest first."""
        await self._projection_settled()
        after = max(0, self.runtime.runner.position - count)
        entries = await self.runtime.db.read(
            self.projection.audit_entries, AuditQuery(after_position=after, limit=count)
        )
        return entries[::-1]

    async def _settled(self, service: str) -> None:
        """Wait (a little) until `service` has applied everything in the log now."""
        target = await self.runtime.log.last_position()
        subject = self.runtime.settings.subjects.query(service, "status")
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            try:
                msg = await self.runtime.nc.request(subject, b"", timeout=1)
            except (nats.errors.NoRespondersError, TimeoutError):
                return  # the query itself will say that it is not answering
            if int(json.loads(msg.data).get("position", 0)) >= target:
                return
            await asyncio.sleep(0.05)

    async def _projection_settled(self) -> None:
        target = await self.runtime.log.last_position()
        for _ in range(round(SETTLE_SECONDS / 0.05)):
            if self.runtime.runner.position >= target:
                return
            await asyncio.sleep(0.05)


def _now() -> datetime:
    return datetime.now(UTC)
