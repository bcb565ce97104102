"""Through NATS: the alerts are a function of the facts. The same commands imported slowly
(one at a time, the services reading batches of 1, the oracle checked after every step) and
fast (all sent back to back, read in batches of 500) give the same ledger threshold events,
the same alert events and the same open alerts, equal to the oracle's."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from contracts import ledger as lg
from contracts import risks as r
from contracts.subjects import Subjects
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import EventLog
from tests.alert_oracle import Oracle
from tests.integration.helpers import accepted, query, quiet, running
from tests.unit.test_alert_batching import story

#: One sequence, the same command ids in both runs (so the same event ids and causes).
STORY = story()


def body(command: Any) -> dict[str, Any]:
    found: dict[str, Any] = command.model_dump(mode="json", exclude_none=True)
    return found


async def derived(event_log: EventLog) -> tuple[list[Any], list[Any]]:
    thresholds, alerts = [], []
    async for e in event_log.read():
        env = e.envelope
        if env.event_type in {t.__name__ for t in lg.THRESHOLD_EVENTS}:
            thresholds.append((env.aggregate_id, env.event_type, env.payload))
        elif env.aggregate_type == r.ALERT:
            payload = {k: v for k, v in env.payload.items() if k != "cause_position"}
            alerts.append((env.event_type, payload))
    return sorted(thresholds, key=str), sorted(alerts, key=str)


def open_of(answer: bytes) -> dict[tuple[str, str, str], float]:
    return {
        (a["rule_id"], a["metric"], a["subject_id"]): a["value"] for a in json.loads(answer)["open"]
    }


def same(found: dict[Any, float], expected: dict[Any, float]) -> bool:
    return set(found) == set(expected) and all(
        math.isclose(found[k], v, rel_tol=1e-12) for k, v in expected.items()
    )


async def import_story(
    nc: Client, nats_url: str, data: Path, event_log: EventLog, batch: int, slow: bool
) -> tuple[Any, Any, dict[Any, float]]:
    oracle = Oracle()
    # Each backend its own databases (on PostgreSQL the test's database is the first's).
    own = {"database_url": None} if slow else {"database_url": f"sqlite:///{data}/all.db"}
    if own["database_url"] is not None:
        await asyncio.to_thread(data.mkdir, parents=True, exist_ok=True)
    else:
        own = {}
    overrides: dict[str, Any] = {"projection_batch_size": batch, **own}
    async with (
        running(nc, "intake", nats_url, data, **own),
        running(nc, "ledger", nats_url, data, **overrides),
        running(nc, "risk", nats_url, data, **overrides),
    ):
        for command in STORY:
            await accepted(nc, type(command).__name__, body(command))
            oracle.accept(command)
            if slow:
                await quiet(nc, event_log, "risk")
                found = open_of(await query(nc, "risk", "alerts", {}))
                assert same(found, oracle.expected()), (command, found, oracle.expected())
        await quiet(nc, event_log, "ledger")
        await quiet(nc, event_log, "risk")
        found = open_of(await query(nc, "risk", "alerts", {}))
        assert same(found, oracle.expected()), (found, oracle.expected())
    thresholds, alerts = await derived(event_log)
    return thresholds, alerts, found


async def test_slow_and_fast_imports_derive_the_same_events_and_alerts(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    slow = await import_story(nc, nats_url, tmp_path / "slow", event_log, 1, slow=True)
    # The fast import on a second, fresh backend: its own nats-server and data.
    other = EmbeddedNats(tmp_path / "nats-fast", port=0)
    other.start()
    try:
        client = await nats.connect(other.url)
        try:
            fresh = EventLog(client.jetstream(), Subjects())
            await fresh.ensure_streams()
            fast = await import_story(client, other.url, tmp_path / "fast", fresh, 500, False)
        finally:
            await client.close()
    finally:
        other.stop()
    assert slow == fast
    thresholds, alerts, open_now = slow
    assert [t for _, t, p in thresholds if "Pool" in t] == [
        "PoolThresholdCleared",
        "PoolThresholdCrossed",
    ]
    assert any(p["reason"] == "project closed" for t, p in alerts if t == "AlertCleared")
    assert ("default-over-allocation", "over_allocation", "dev/2027-01") in open_now
