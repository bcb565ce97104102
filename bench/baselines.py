"""Raw baselines measured in the same run: plain nats-py JetStream publish (awaited one by
one, and many in flight), pull fetch, and the `eventsourcing` library on SQLite.

`python -m bench.baselines fetch URL STREAM SUBJECT COUNT` runs the fetch in its own
process and prints JSON with its rate and peak memory, to stand beside a service process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from bench.measure import Run, cpu_seconds, in_flight, open_loop, peak_rss_kib, windows
from bench.report import Baseline

RAW_STREAM = "BENCH_RAW"
RAW_PREFIX = "bench.raw"
FETCH_BATCH = 500
ASYNC_WINDOW = 256


async def create_raw_stream(js: JetStreamContext) -> None:
    """File storage, like the log, so raw and backend writes hit the same disk path."""
    await js.add_stream(
        StreamConfig(name=RAW_STREAM, subjects=[f"{RAW_PREFIX}.>"], storage=StorageType.FILE)
    )


def _publisher(js: JetStreamContext, kind: str, payload: bytes) -> Any:
    """One subject per message, as the log has one subject per aggregate."""

    async def send(index: int) -> bool:
        await js.publish(f"{RAW_PREFIX}.{kind}.{index}", payload, timeout=10)
        return True

    return send


async def publish_awaited(js: JetStreamContext, payload: bytes, count: int) -> Baseline:
    run = await in_flight(_publisher(js, "awaited", payload), count, concurrency=1)
    return Baseline("raw JS publish, awaited one by one", run.rate, "msg/s", {"messages": count})


async def publish_async(js: JetStreamContext, payload: bytes, count: int) -> Baseline:
    run = await windows(_publisher(js, "async", payload), count, ASYNC_WINDOW)
    return Baseline(
        f"raw JS publish, {ASYNC_WINDOW} in flight",
        run.rate,
        "msg/s",
        {"messages": count, "window": ASYNC_WINDOW},
    )


async def publish_latency(
    js: JetStreamContext, payload: bytes, count: int, rate: float
) -> tuple[Baseline, Baseline]:
    run = await open_loop(_publisher(js, "latency", payload), count, rate)
    details = {"messages": count, "rate": rate, "failures": run.failures}
    return (
        Baseline(f"raw JS publish p50 at {rate:,.0f}/s", run.percentile_ms(0.50), "ms", details),
        Baseline(f"raw JS publish p99 at {rate:,.0f}/s", run.percentile_ms(0.99), "ms", details),
    )


async def fetch(js: JetStreamContext, stream: str, subject: str, count: int) -> Run:
    """Pull `count` messages in batches of 500 with a plain pull consumer, acking each."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        inactive_threshold=30.0,
    )
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    received = 0
    started = time.perf_counter()
    while received < count:
        msgs = await sub.fetch(min(FETCH_BATCH, count - received), timeout=10)
        for msg in msgs:
            await msg.ack()
        received += len(msgs)
    seconds = time.perf_counter() - started
    await sub.unsubscribe()
    return Run(received, seconds, 0, [])


async def fetch_raw(js: JetStreamContext, count: int) -> Baseline:
    run = await fetch(js, RAW_STREAM, f"{RAW_PREFIX}.async.>", count)
    return Baseline(f"raw pull fetch, batch {FETCH_BATCH}", run.rate, "msg/s", {"messages": count})


async def _fetch_main(url: str, stream: str, subject: str, count: int) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        run = await fetch(nc.jetstream(timeout=10), stream, subject, count)
    finally:
        await nc.close()
    return {
        "messages": run.count,
        "seconds": run.seconds,
        "peak_rss_kib": peak_rss_kib(),
        "cpu_seconds": cpu_seconds(),
    }


# --- the eventsourcing library ------------------------------------------------------------


def eventsourcing_baselines(payloads: list[dict[str, Any]], db: Path) -> tuple[Baseline, Baseline]:
    """Write one event per new aggregate (as each proposal starts a project), then read
    them all back in log order and turn each into a domain event (as a replay does)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Project(Aggregate):
        @event("Proposed")
        def __init__(self, payload: dict[str, Any]) -> None:
            self.payload = payload

    app: Application[Any] = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}
    )
    started = time.perf_counter()
    for payload in payloads:
        app.save(Project(payload))
    written = time.perf_counter() - started

    started = time.perf_counter()
    read, start = 0, 1
    while True:
        notifications = app.recorder.select_notifications(start=start, limit=FETCH_BATCH)
        if not notifications:
            break
        for notification in notifications:
            app.mapper.to_domain_event(notification)
        read += len(notifications)
        start = notifications[-1].id + 1
    seconds = time.perf_counter() - started
    app.close()
    details = {"events": len(payloads), "persistence": "sqlite"}
    return (
        Baseline("eventsourcing: write, one save each", len(payloads) / written, "ev/s", details),
        Baseline("eventsourcing: read back in order", read / seconds, "ev/s", details),
    )


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[0] != "fetch":
        print("usage: python -m bench.baselines fetch URL STREAM SUBJECT COUNT", file=sys.stderr)
        return 2
    _, url, stream, subject, count = argv
    print(json.dumps(asyncio.run(_fetch_main(url, stream, subject, int(count)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
