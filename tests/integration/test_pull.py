"""`BatchPuller`, the projections' read of the log, on a real nats-server: every message
once and in order whatever the interleaving of appends and fetches (the oracle is the
list of what was appended), a fetch that waits out a paused server, a new event handed out
while a fetch waits, and reading on after the server restarted under it."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import nats
import nats.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.embedded_nats import EmbeddedNats
from shared.pull import BatchPuller, position_of

MAX_BATCH = 40


async def _stream(js: JetStreamContext) -> tuple[str, str]:
    name = f"s{uuid.uuid4().hex[:10]}"
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    await js.add_consumer(
        name,
        ConsumerConfig(
            durable_name="reader",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.ALL,
            ack_wait=60,
            max_ack_pending=2 * MAX_BATCH,
        ),
    )
    return name, "reader"


async def _append(js: JetStreamContext, stream: str, count: int) -> None:
    for _ in range(count):
        await js.publish(f"{stream}.e", b"x")


# One step: append some messages, or fetch a batch (and acknowledge it, as the runner does).
STEP = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 60)),
    st.tuples(st.just("fetch"), st.integers(1, MAX_BATCH)),
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEP, min_size=1, max_size=12))
async def test_every_message_once_and_in_order(nc: Client, steps: list[tuple[str, int]]) -> None:
    js = nc.jetstream()
    stream, consumer = await _stream(js)
    puller = await BatchPuller(js, stream, consumer).start()
    appended, seen = 0, list[int]()
    try:
        for kind, size in [*steps, ("fetch", MAX_BATCH)]:
            if kind == "append":
                await _append(js, stream, size)
                appended += size
                continue
            if len(seen) == appended:
                with pytest.raises(nats.errors.TimeoutError):
                    await puller.fetch(size, timeout=0.3)
                continue
            msgs = await puller.fetch(size, timeout=5.0)
            assert 1 <= len(msgs) <= size
            seen += [position_of(m) for m in msgs]
            await msgs[-1].ack()
            assert seen == list(range(1, len(seen) + 1))
        while len(seen) < appended:
            msgs = await puller.fetch(MAX_BATCH, timeout=5.0)
            seen += [position_of(m) for m in msgs]
            await msgs[-1].ack()
        assert seen == list(range(1, appended + 1))
    finally:
        await puller.unsubscribe()
        await js.delete_stream(stream)


async def test_an_event_appended_while_a_fetch_waits_is_handed_out(nc: Client) -> None:
    js = nc.jetstream()
    stream, consumer = await _stream(js)
    puller = await BatchPuller(js, stream, consumer).start()
    asyncio.get_running_loop().call_later(0.3, asyncio.ensure_future, _append(js, stream, 1))
    msgs = await puller.fetch(10, timeout=10.0)  # the lingering request delivers it
    assert [position_of(m) for m in msgs] == [1]
    await puller.unsubscribe()


async def test_a_fetch_waits_out_a_paused_server(nc: Client, nats_server: EmbeddedNats) -> None:
    """The server stops answering for longer than a fetch waits while a read is half way:
    the reader times out meanwhile, then goes on, every message once."""
    js = nc.jetstream()
    stream, consumer = await _stream(js)
    await _append(js, stream, 300)
    puller = await BatchPuller(js, stream, consumer).start()
    seen: list[int] = []
    assert nats_server.process is not None
    pid = nats_server.process.pid
    while len(seen) < 300:
        try:
            msgs = await puller.fetch(MAX_BATCH, timeout=0.5)
        except nats.errors.TimeoutError:
            continue
        seen += [position_of(m) for m in msgs]
        await msgs[-1].ack()
        if len(seen) >= 100 and len(seen) - len(msgs) < 100:
            os.kill(pid, signal.SIGSTOP)
            asyncio.get_running_loop().call_later(2.0, os.kill, pid, signal.SIGCONT)
    assert seen == list(range(1, 301))
    await puller.unsubscribe()


async def test_reading_goes_on_after_the_server_restarts(tmp_path: Path) -> None:
    """The outstanding pull request dies with the server; the reader sends another once
    that one is overdue instead of waiting forever for its end."""
    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    client = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = client.jetstream()
        stream, consumer = await _stream(js)
        await _append(js, stream, 10)
        puller = await BatchPuller(js, stream, consumer).start()
        first = await puller.fetch(10, timeout=5.0)
        await first[-1].ack()
        seen = [position_of(m) for m in first]
        server.stop()
        server = EmbeddedNats(tmp_path / "nats", port=int(url.rsplit(":", 1)[1]))
        server.start()
        for _ in range(100):  # reconnected, and JetStream back (the appends need both)
            try:
                await js.stream_info(stream)
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.1)
        await _append(js, stream, 5)
        for _ in range(40):
            if len(seen) == 15:
                break
            try:
                msgs = await puller.fetch(10, timeout=0.5)
            except nats.errors.TimeoutError:
                continue
            seen += [position_of(m) for m in msgs if position_of(m) > seen[-1]]
            await msgs[-1].ack()
        assert seen == list(range(1, 16))
        await puller.unsubscribe()
    finally:
        await client.close()
        server.stop()
