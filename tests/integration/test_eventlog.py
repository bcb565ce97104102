"""The log on a real nats-server: append-only, one writer per aggregate, idempotent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError

from contracts.base import EventEnvelope
from contracts.subjects import LOG_STREAM, Subjects
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import ConcurrencyConflict, EventLog, LogUnavailable, WeakStreamConfig
from tests.integration.helpers import fill_log


def envelope(aggregate_id: str, n: int = 0, event_id: str | None = None) -> EventEnvelope:
    now = datetime.now(UTC)
    return EventEnvelope(
        event_id=event_id or str(uuid.uuid4()),
        event_type="ProjectSubmittedForReview",
        schema_version=1,
        aggregate_type="project",
        aggregate_id=aggregate_id,
        actor="tester",
        source="tests",
        occurred_at=now,
        recorded_at=now,
        correlation_id=f"c-{n}",
        causation_id=f"cmd-{n}",
        payload={"project_id": aggregate_id},
    )


async def test_stream_refuses_delete_and_purge(event_log: EventLog, nc: Client) -> None:
    await event_log.append(envelope("P-1"), expected_last_position=0)
    js = nc.jetstream()
    with pytest.raises(APIError, match="not permitted"):
        await js.delete_msg(LOG_STREAM, 1)
    with pytest.raises(APIError, match="not permitted"):
        await js.purge_stream(LOG_STREAM)
    assert await event_log.last_position() == 1
    info = await js.stream_info(LOG_STREAM)
    assert info.config.deny_delete and info.config.deny_purge
    assert info.config.max_age == 0 and info.config.max_msgs == -1
    assert info.config.storage == StorageType.FILE


async def test_weaker_existing_stream_is_a_startup_error(nc: Client) -> None:
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=LOG_STREAM,
            subjects=["portfolio.events.>"],
            storage=StorageType.FILE,
            max_age=3600,
        )
    )
    with pytest.raises(WeakStreamConfig) as raised:
        await EventLog(js, Subjects()).ensure_streams()
    message = str(raised.value)
    assert "deny_delete is off" in message and "max_age" in message


async def test_two_concurrent_writers_one_wins(event_log: EventLog) -> None:
    first = await event_log.append(envelope("P-1"), expected_last_position=0)
    results = await asyncio.gather(
        event_log.append(envelope("P-1", 1), expected_last_position=first.position),
        event_log.append(envelope("P-1", 2), expected_last_position=first.position),
        return_exceptions=True,
    )
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(conflicts) == 1 and len(winners) == 1
    assert len(await event_log.read_aggregate("project", "P-1")) == 2


async def test_new_aggregate_must_be_empty(event_log: EventLog) -> None:
    await event_log.append(envelope("P-1"), expected_last_position=0)
    with pytest.raises(ConcurrencyConflict):
        await event_log.append(envelope("P-1", 1), expected_last_position=0)


async def test_retried_append_is_stored_once(event_log: EventLog) -> None:
    event = envelope("P-1", event_id="fixed-id")
    first = await event_log.append(event, expected_last_position=0)
    # The retry carries the same stale expectation; it is recognised as already landed.
    again = await event_log.append(event, expected_last_position=0)
    assert again.duplicate and again.position == first.position
    assert await event_log.last_position() == 1


async def test_same_event_id_within_window_is_deduplicated(event_log: EventLog) -> None:
    await event_log.append(envelope("P-1"), expected_last_position=0)
    event = envelope("P-1", 1, event_id="same")
    stored = await event_log.append(event, expected_last_position=1)
    # Publish the same message id again with a fresh expectation: the server dedupes it.
    repeat = await event_log.append(event, expected_last_position=stored.position)
    assert repeat.duplicate and repeat.position == stored.position
    assert await event_log.last_position() == 2


async def test_reads_by_aggregate_position_and_time(event_log: EventLog) -> None:
    positions: dict[str, int] = {}
    for n in range(6):
        aggregate = f"P-{n % 2}"
        expected = positions.get(aggregate, 0)
        result = await event_log.append(envelope(aggregate, n), expected_last_position=expected)
        positions[aggregate] = result.position
        if n == 2:
            await asyncio.sleep(0.05)
            cut = datetime.now(UTC)
            await asyncio.sleep(0.05)
    history = await event_log.read_aggregate("project", "P-1")
    assert [e.position for e in history] == [2, 4, 6]
    assert await event_log.read_aggregate("project", "nobody") == []
    assert [e.position async for e in event_log.read(4)] == [4, 5, 6]
    assert [e.position async for e in event_log.read(until_time=cut)] == [1, 2, 3]
    assert [e.position async for e in event_log.read(2, until_position=3)] == [2, 3]
    assert [e.position async for e in event_log.read(7)] == []
    assert (await event_log.get(5)).envelope.causation_id == "cmd-4"


async def test_a_log_with_fewer_replicas_than_configured_is_refused(nc: Client) -> None:
    js = nc.jetstream()
    await EventLog(js, Subjects()).ensure_streams()  # one replica, on this single server
    with pytest.raises(WeakStreamConfig, match="1 replica"):
        await EventLog(js, Subjects(), replicas=3).ensure_streams()


# --- the server misbehaving: reads that know where the log ends ---------------------------


def pause(server: EmbeddedNats, seconds: float) -> None:
    """SIGSTOP the nats-server now, SIGCONT it `seconds` later (from the event loop)."""
    assert server.process is not None
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)
    asyncio.get_running_loop().call_later(seconds, os.kill, pid, signal.SIGCONT)
    # A signal is delivered when the kernel next schedules the server: until its state reads
    # "stopped", a thread of it may still answer what the test sends next.
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + 2.0
    while tasks.exists() and time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # a thread may end while being looked at
            states = [
                (t / "stat").read_text().rpartition(")")[2].split()[0] for t in tasks.iterdir()
            ]
            if all(state in ("T", "t") for state in states):
                return
        time.sleep(0.001)


async def test_a_read_paused_in_the_middle_is_complete(
    event_log: EventLog, nats_server: EmbeddedNats
) -> None:
    """The server stops answering for longer than a fetch waits (2 s) while a read is half
    way: the read waits it out and delivers every event, none twice."""
    end = await fill_log(event_log, 3000)
    seen = []
    async for event in event_log.read(batch=250):
        seen.append(event.position)
        if len(seen) == 1000:
            pause(nats_server, 4.0)
    assert seen == list(range(1, end + 1))


async def test_a_read_that_cannot_finish_raises_never_shortens(
    nc: Client, nats_server: EmbeddedNats
) -> None:
    """Past its patience a read raises `LogUnavailable`: what it yielded is a prefix, and
    the caller knows it is one."""
    log = EventLog(nc.jetstream(timeout=1.0), Subjects(), patience=2.0)
    await log.ensure_streams()
    end = await fill_log(log, 1500)
    seen = []
    with pytest.raises(LogUnavailable, match=f"of {end}"):
        async for event in log.read(batch=250):
            seen.append(event.position)
            if len(seen) == 500:
                pause(nats_server, 6.0)
    assert seen == list(range(1, len(seen) + 1)) and len(seen) < end
    await asyncio.sleep(6.5)  # resumed: the same read is whole again
    assert [e.position async for e in log.read()] == list(range(1, end + 1))


async def test_an_append_gives_up_after_its_patience(nc: Client, nats_server: EmbeddedNats) -> None:
    log = EventLog(nc.jetstream(timeout=1.0), Subjects(), patience=1.5)
    await log.ensure_streams()
    await log.append(envelope("P-1"), expected_last_position=0)
    pause(nats_server, 4.0)
    late = envelope("P-2")
    with pytest.raises(LogUnavailable) as raised:
        await log.append(late, expected_last_position=0)
    assert raised.value.retry_after > 0
    await asyncio.sleep(3.0)
    # The paused server may still have taken the publish from its socket once resumed: the
    # same event sent again is stored once either way.
    log.patience = 20.0
    retried = await log.append(late, expected_last_position=0)
    assert retried.position == 2 == await log.last_position()
